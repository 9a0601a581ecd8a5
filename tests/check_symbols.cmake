# Fails if libroost.a defines an external symbol that does not start with
# roost_ (generated protobuf code is roost__v1__..., which also qualifies).
execute_process(COMMAND nm -g --defined-only ${LIB}
    OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(bad "")
set(count 0)
foreach(line IN LISTS lines)
    if(line MATCHES "^[0-9a-fA-F]+ [A-Za-z] (.+)$")
        set(sym "${CMAKE_MATCH_1}")
        math(EXPR count "${count}+1")
        # Sanitizer and coverage instrumentation adds its own symbols
        # (__odr_asan.*, __sancov_*); they are not part of libroost.
        if(NOT sym MATCHES "^roost_" AND NOT sym MATCHES "^__(odr_asan|asan|ubsan|sancov)")
            list(APPEND bad "${sym}")
        endif()
    endif()
endforeach()
if(count EQUAL 0)
    message(FATAL_ERROR "no symbols found in ${LIB}")
endif()
if(bad)
    message(FATAL_ERROR "symbols without the roost_ prefix: ${bad}")
endif()
message(STATUS "${count} external symbols, all roost_-prefixed")
