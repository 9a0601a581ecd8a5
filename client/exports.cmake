# roost_write_version_script(HEADER OUT): a GNU ld version script that
# exports exactly the functions the public header declares (every line
# that starts a declaration "TYPE roost_name(") and hides everything else,
# so that libroost.so offers the documented API and not the internal
# roost_<module>_<verb> functions the static archive has to keep external.
#
# roost_public_functions(HEADER VAR): the names of the functions HEADER
# declares, in VAR; also used by tests/client/check_exports.cmake.
function(roost_public_functions header var)
    file(STRINGS ${header} decls REGEX "^[a-z][^(]*[ *]roost_[a-z0-9_]+\\(")
    set(names "")
    foreach(line IN LISTS decls)
        string(REGEX MATCH "roost_[a-z0-9_]+\\(" name "${line}")
        string(REPLACE "(" "" name "${name}")
        list(APPEND names "${name}")
    endforeach()
    list(REMOVE_DUPLICATES names)
    set(${var} ${names} PARENT_SCOPE)
endfunction()

function(roost_write_version_script header out)
    roost_public_functions(${header} names)
    list(LENGTH names n)
    if(n EQUAL 0)
        message(FATAL_ERROR "no function declarations found in ${header}")
    endif()
    list(JOIN names ";\n    " body)
    file(WRITE ${out}.tmp "/* Generated from roost.h by client/exports.cmake. */\n{\n  global:\n    ${body};\n  local:\n    *;\n};\n")
    configure_file(${out}.tmp ${out} COPYONLY)
endfunction()
