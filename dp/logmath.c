/*
 * logmath.c - log-space addition and subtraction. Pure functions.
 */
#include "dp/logmath.h"

#include <math.h>

double
roost_logaddexp(double a, double b)
{
    if (a == -HUGE_VAL)
        return b;
    if (b == -HUGE_VAL)
        return a;
    double hi = a > b ? a : b;
    double lo = a > b ? b : a;
    return hi + log1p(exp(lo - hi));
}

double
roost_logsubexp(double a, double b)
{
    if (b == -HUGE_VAL)
        return a;
    if (a < b)
        return (double)NAN;
    if (a == b)
        return -HUGE_VAL;
    /* log(e^a - e^b) = a + log(1 - e^(b-a)); expm1 keeps precision when
     * b is close to a. */
    return a + log(-expm1(b - a));
}

double
roost_logbinom(double n, double k)
{
    return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0);
}
