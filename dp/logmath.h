/*
 * logmath.h - numerically stable arithmetic on values held as natural
 * logarithms, for the privacy accountant (whose terms overflow a double
 * long before they matter) and anything else that sums tiny probabilities.
 */
#ifndef ROOST_DP_LOGMATH_H
#define ROOST_DP_LOGMATH_H

/* log(exp(a) + exp(b)); -HUGE_VAL stands for log(0). */
double roost_logaddexp(double a, double b);

/* log(exp(a) - exp(b)) for a >= b; -HUGE_VAL when a == b; NAN if a < b. */
double roost_logsubexp(double a, double b);

/* log(n choose k) for real n >= k >= 0, via lgamma. */
double roost_logbinom(double n, double k);

#endif
