# The dynamic symbols libroost.so defines are exactly the functions that
# client/include/roost/roost.h declares: nothing internal is exported (an
# app could bind to it and it would become ABI), and nothing documented is
# missing. Run with -DLIB=libroost.so -DHEADER=roost.h
# -DEXPORTS=client/exports.cmake (which reads the header's declarations).
execute_process(COMMAND nm -D --defined-only ${LIB}
    OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(exported "")
foreach(line IN LISTS lines)
    # Function and data symbols; the version node and sanitizer runtime
    # hooks are not the library's own.
    if(line MATCHES "^[0-9a-fA-F]+ [TtDdBbRrVvWwGgSs] ([^ @]+)")
        set(sym "${CMAKE_MATCH_1}")
        if(NOT sym MATCHES "^__(odr_asan|asan|ubsan|sancov)")
            list(APPEND exported "${sym}")
        endif()
    endif()
endforeach()
include(${EXPORTS})
roost_public_functions(${HEADER} declared)
set(extra ${exported})
list(REMOVE_ITEM extra ${declared})
set(missing ${declared})
list(REMOVE_ITEM missing ${exported})
list(LENGTH exported n_exported)
list(LENGTH declared n_declared)
if(n_declared LESS 20)
    message(FATAL_ERROR "only ${n_declared} declarations found in ${HEADER}")
endif()
if(extra)
    list(LENGTH extra n_extra)
    list(SUBLIST extra 0 10 some)
    message(FATAL_ERROR "${LIB} exports ${n_extra} symbols that roost.h "
        "does not declare, e.g. ${some}")
endif()
if(missing)
    message(FATAL_ERROR "${LIB} does not export ${missing}")
endif()
message(STATUS "${n_exported} dynamic symbols, exactly roost.h's ${n_declared} functions")
