/*
 * version.c - the library's version, for applications that link libroost
 * dynamically and want to know which one they got.
 */
#include <roost/roost.h>

const char *
roost_version_string(void)
{
    return ROOST_VERSION_STRING;
}
