/*
 * hello_roost.c - the smallest program that links libroost: prints the
 * library version and the text of an error code. The install test builds
 * it against the installed package.
 */
#include <roost/roost.h>

#include <stdio.h>

int
main(void)
{
    printf("libroost %s: %s = \"%s\"\n", roost_version_string(),
           roost_errname(ROOST_EBUDGET), roost_strerror(ROOST_EBUDGET));
    return 0;
}
