/*
 * cmd_report.c - `roost report --db FILE -o report.html`: one
 * self-contained HTML file describing a run from the coordinator's
 * database: the run's settings, the hash chain's verdict, a summary table,
 * and charts per round of accuracy, loss, reported epsilon (min, median
 * and max across the round's clients) and participation (selected,
 * accepted, refused, dropped), followed by a table of every round.
 *
 * Self-contained means no network and no scripts: CSS is inline and the
 * charts are SVG drawn here, so the file can be mailed, archived next to
 * the database, or opened on an air-gapped machine. Every string from the
 * database is HTML-escaped (a run name is operator text, not markup).
 *
 * Read-only (the store is opened READONLY); safe while the coordinator
 * runs. The whole round list is read into memory: about 300 bytes per
 * round, so a million rounds is 300 MB -- the report refuses more than
 * ROUND_CAP rounds rather than grow without bound.
 */
#include "server/cli.h"
#include "server/store.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUND_CAP 1000000
#define NOT_MEASURED ((double)NAN)

static const char report_usage[] =
    "usage: roost report --db FILE -o report.html [--title TEXT]\n"
    "\n"
    "Write one self-contained HTML file (inline CSS and SVG, no scripts)\n"
    "with the run's settings, the hash chain's status, a summary, charts per\n"
    "round of accuracy, loss, epsilon (min/median/max across clients) and\n"
    "participation, and a table of every round.\n"
    "\n"
    "  --db FILE       the coordinator's SQLite file (opened read-only)\n"
    "  -o, --out FILE  the HTML file to write ('-': standard output)\n"
    "  --title TEXT    page title (default: the run name)\n";

/* Everything the page shows, read from the store first. */
struct report {
    const char *db;
    roost_store_run_info *run; /* NULL: no run */
    roost_store_round_info *rounds;
    size_t n;
    roost_store_eps_stats *eps; /* per round, n */
    roost_store_eps_stats eps_all;
    int64_t clients;
    int chain_rc;
    int64_t chain_bad, chain_rounds;
    uint8_t chain_head[ROOST_STORE_HASH_LEN];
    char chain_msg[ROOST_ERRMSG_CAP];
};

/* ---------------------------------------------------------------------
 * HTML helpers.
 * ------------------------------------------------------------------- */
static void
html_escape(FILE *f, const char *s)
{
    if (s == NULL)
        return;
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static void
fmt_num(char *buf, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(buf, cap, "%.4g", v);
    else
        snprintf(buf, cap, "&#8211;"); /* en dash: not measured */
}

static void
fmt_time(char *buf, size_t cap, int64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || gmtime_r(&secs, &tm) == NULL)
        snprintf(buf, cap, "&#8211;");
    else
        strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* ---------------------------------------------------------------------
 * SVG charts.
 * ------------------------------------------------------------------- */
#define CH_W 960.0
#define CH_H 300.0
#define PAD_L 64.0
#define PAD_R 16.0
#define PAD_T 34.0
#define PAD_B 40.0
/* More ticks than any axis of nice_axis has (at most n + 3 for its n): a
 * bound on the tick loops, which add a step to a double. On values an
 * edited file may hold the step cannot move it (an axis end rounded up to
 * infinity, or a step below the spacing of doubles at 1e17) and the loop
 * would write ticks for ever. */
#define MAX_TICKS 64

struct axis {
    double lo, hi, step; /* tick grid */
};

/* Ticks at 1, 2 or 5 times a power of ten, about n of them over [lo, hi]. */
static struct axis
nice_axis(double lo, double hi, int n)
{
    struct axis a;
    if (!(hi > lo)) {
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= d;
        hi += d;
    }
    double raw = (hi - lo) / n;
    double mag = pow(10.0, floor(log10(raw)));
    double r = raw / mag;
    double step = (r <= 1.0   ? 1.0
                   : r <= 2.0 ? 2.0
                   : r <= 5.0 ? 5.0
                              : 10.0) *
                  mag;
    a.lo = floor(lo / step) * step;
    a.hi = ceil(hi / step) * step;
    a.step = step;
    return a;
}

struct chart {
    FILE *f;
    struct axis x, y;
    double x0, x1; /* data range of the x axis (round ids) */
};

static double
px(const struct chart *c, double x)
{
    return PAD_L + (x - c->x.lo) / (c->x.hi - c->x.lo) * (CH_W - PAD_L - PAD_R);
}

static double
py(const struct chart *c, double y)
{
    return CH_H - PAD_B -
           (y - c->y.lo) / (c->y.hi - c->y.lo) * (CH_H - PAD_T - PAD_B);
}

static void
tick_label(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    if (step >= 1 && fabs(v) < 1e15)
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%.*f", (int)fmin(6, ceil(-log10(step))), v);
}

/* Open an <svg>, draw the frame, grid, tick labels and title. */
static void
chart_begin(struct chart *c, FILE *f, const char *id, const char *title,
            double xmin, double xmax, double ymin, double ymax)
{
    c->f = f;
    /* Round ids are integers: at most ~12 ticks, never fractional. */
    c->x = nice_axis(xmin - 0.5, xmax + 0.5, 10);
    c->x.step = fmax(1.0, c->x.step);
    c->x.lo = xmin - 0.5; /* the plot spans exactly the rounds */
    c->x.hi = xmax + 0.5;
    c->y = nice_axis(ymin, ymax, 5);
    fprintf(f,
            "<svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %.0f %.0f\" "
            "role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">\n"
            "<title>",
            id, CH_W, CH_H);
    html_escape(f, title);
    fputs("</title>\n", f);
    fprintf(f, "<text x=\"%.0f\" y=\"20\" class=\"ct\">", PAD_L);
    html_escape(f, title);
    fputs("</text>\n", f);
    char lab[32];
    double v = c->y.lo;
    for (int i = 0; i < MAX_TICKS && v <= c->y.hi + c->y.step * 0.5;
         i++, v += c->y.step) {
        double y = py(c, v);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "class=\"grid\"/>\n",
                PAD_L, y, CH_W - PAD_R, y);
        tick_label(lab, sizeof(lab), v, c->y.step);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"yl\">%s</text>\n",
                PAD_L - 6, y + 4, lab);
    }
    v = ceil(c->x.lo / c->x.step) * c->x.step;
    for (int i = 0; i < MAX_TICKS && v <= c->x.hi; i++, v += c->x.step) {
        double x = px(c, v);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "class=\"tick\"/>\n",
                x, CH_H - PAD_B, x, CH_H - PAD_B + 5);
        tick_label(lab, sizeof(lab), v, 1);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"xl\">%s</text>\n", x,
                CH_H - PAD_B + 18, lab);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"xt\">round</text>\n",
            (PAD_L + CH_W - PAD_R) / 2, CH_H - 4);
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
            "class=\"frame\"/>\n",
            PAD_L, PAD_T, CH_W - PAD_L - PAD_R, CH_H - PAD_T - PAD_B);
}

static void
chart_legend(struct chart *c, const char *const *names,
             const char *const *classes, size_t n)
{
    double x = CH_W - PAD_R - 8;
    /* Right-aligned, laid out from the right edge. */
    for (size_t i = n; i-- > 0;) {
        double w = 7.0 * (double)strlen(names[i]) + 26;
        x -= w;
        fprintf(c->f,
                "<rect x=\"%.1f\" y=\"11\" width=\"14\" height=\"10\" "
                "class=\"%s sw\"/><text x=\"%.1f\" y=\"20\" "
                "class=\"lg\">%s</text>\n",
                x, classes[i], x + 18, names[i]);
    }
}

static void
chart_empty(FILE *f, const char *id, const char *title, const char *why)
{
    fprintf(f,
            "<svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %.0f 120\" "
            "role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">\n"
            "<title>%s</title><text x=\"%.0f\" y=\"20\" class=\"ct\">%s"
            "</text>\n<text x=\"%.0f\" y=\"70\" class=\"none\">%s</text>\n"
            "</svg>\n",
            id, CH_W, title, PAD_L, title, CH_W / 2, why);
}

/* A polyline of (round, y) with gaps where y is not finite, plus dots
 * carrying a tooltip when there are few enough points to hover. */
static void
chart_line(struct chart *c, const struct report *r, const double *y,
           const char *cls, const char *name)
{
    bool pen = false;
    fprintf(c->f, "<path class=\"%s ln\" d=\"", cls);
    for (size_t i = 0; i < r->n; i++) {
        if (!isfinite(y[i])) {
            /* A federated evaluation round measures nothing held-out: it
             * does not break the line of the training rounds around it. */
            if (strcmp(r->rounds[i].kind, "eval") != 0)
                pen = false;
            continue;
        }
        fprintf(c->f, "%s%.1f %.1f ", pen ? "L" : "M",
                px(c, (double)r->rounds[i].round_id), py(c, y[i]));
        pen = true;
    }
    fputs("\"/>\n", c->f);
    if (r->n > 200)
        return;
    for (size_t i = 0; i < r->n; i++) {
        if (!isfinite(y[i]))
            continue;
        fprintf(c->f,
                "<circle class=\"%s pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\">"
                "<title>round %" PRId64 ": %s %.6g</title></circle>\n",
                cls, px(c, (double)r->rounds[i].round_id), py(c, y[i]),
                r->rounds[i].round_id, name, y[i]);
    }
}

/* Shaded band between lo and hi (both finite), gaps elsewhere. */
static void
chart_band(struct chart *c, const struct report *r, const double *lo,
           const double *hi, const char *cls)
{
    size_t i = 0;
    while (i < r->n) {
        while (i < r->n && !(isfinite(lo[i]) && isfinite(hi[i])))
            i++;
        size_t start = i;
        while (i < r->n && isfinite(lo[i]) && isfinite(hi[i]))
            i++;
        if (i == start)
            break;
        fprintf(c->f, "<path class=\"%s\" d=\"", cls);
        for (size_t k = start; k < i; k++)
            fprintf(c->f, "%s%.1f %.1f ", k == start ? "M" : "L",
                    px(c, (double)r->rounds[k].round_id), py(c, hi[k]));
        for (size_t k = i; k-- > start;)
            fprintf(c->f, "L%.1f %.1f ", px(c, (double)r->rounds[k].round_id),
                    py(c, lo[k]));
        if (i - start == 1) /* one round: give the band a visible width */
            fprintf(c->f, "M%.1f %.1f h4 V%.1f h-8 V%.1f h4",
                    px(c, (double)r->rounds[start].round_id), py(c, hi[start]),
                    py(c, lo[start]), py(c, hi[start]));
        fputs("Z\"/>\n", c->f);
    }
}

/* Range of finite values over several arrays; false if none. */
static bool
finite_range(const double *const *ys, size_t ny, size_t n, double *lo,
             double *hi)
{
    *lo = HUGE_VAL;
    *hi = -HUGE_VAL;
    for (size_t k = 0; k < ny; k++)
        for (size_t i = 0; i < n; i++)
            if (isfinite(ys[k][i])) {
                *lo = fmin(*lo, ys[k][i]);
                *hi = fmax(*hi, ys[k][i]);
            }
    return *lo <= *hi;
}

static void
line_chart(FILE *f, const struct report *r, const char *id, const char *title,
           const double *const *ys, const char *const *names,
           const char *const *classes, size_t ny, bool unit_range)
{
    double lo, hi;
    if (r->n == 0) {
        chart_empty(f, id, title, "no rounds committed yet");
        return;
    }
    if (!finite_range(ys, ny, r->n, &lo, &hi)) {
        chart_empty(f, id, title, "not measured in any round");
        return;
    }
    if (unit_range) {
        lo = fmax(0, fmin(lo, 0.0));
        hi = fmin(1, fmax(hi, 0.1));
    } else if (lo > 0 && lo < 0.5 * hi) {
        lo = 0; /* start at zero when it costs little resolution */
    }
    struct chart c;
    chart_begin(&c, f, id, title, (double)r->rounds[0].round_id,
                (double)r->rounds[r->n - 1].round_id, lo, hi);
    /* Series never measured (e.g. client-reported loss under DP) are
     * neither drawn nor listed in the legend. */
    const char *shown_names[8], *shown_classes[8];
    size_t shown = 0;
    for (size_t k = 0; k < ny && shown < 8; k++) {
        double slo, shi;
        if (!finite_range(&ys[k], 1, r->n, &slo, &shi))
            continue;
        chart_line(&c, r, ys[k], classes[k], names[k]);
        shown_names[shown] = names[k];
        shown_classes[shown++] = classes[k];
    }
    chart_legend(&c, shown_names, shown_classes, shown);
    fputs("</svg>\n", f);
}

static void
epsilon_chart(FILE *f, const struct report *r, const double *mn,
              const double *med, const double *mx, const double *cdp)
{
    const char *title = "Reported epsilon per round (across clients)";
    if (r->n == 0) {
        chart_empty(f, "chart-epsilon", title, "no rounds committed yet");
        return;
    }
    const double *all[] = {mn, mx, cdp};
    double lo, hi;
    if (!finite_range(all, 3, r->n, &lo, &hi)) {
        chart_empty(f, "chart-epsilon", title,
                    "no client reported an epsilon (DP off?)");
        return;
    }
    struct chart c;
    chart_begin(&c, f, "chart-epsilon", title, (double)r->rounds[0].round_id,
                (double)r->rounds[r->n - 1].round_id, fmin(0, lo), hi);
    chart_band(&c, r, mn, mx, "s-band");
    chart_line(&c, r, mn, "s-min", "min");
    chart_line(&c, r, mx, "s-max", "max");
    chart_line(&c, r, med, "s-med", "median"); /* on top: the usual case */
    bool any_cdp = false;
    for (size_t i = 0; i < r->n; i++)
        any_cdp = any_cdp || isfinite(cdp[i]);
    if (any_cdp) {
        chart_line(&c, r, cdp, "s-cdp", "central DP");
        const char *names[] = {"min", "median", "max", "central DP"};
        const char *cls[] = {"s-min", "s-med", "s-max", "s-cdp"};
        chart_legend(&c, names, cls, 4);
    } else {
        const char *names[] = {"min", "median", "max"};
        const char *cls[] = {"s-min", "s-med", "s-max"};
        chart_legend(&c, names, cls, 3);
    }
    fputs("</svg>\n", f);
}

/* Saturating arithmetic on counts read from the file: an edited file may
 * hold any 64-bit values, and signed overflow is undefined behaviour. */
static int64_t
sat_add(int64_t a, int64_t b)
{
    int64_t sum;
    if (!__builtin_add_overflow(a, b, &sum))
        return sum;
    return b > 0 ? INT64_MAX : INT64_MIN;
}

static int64_t
sat_neg(int64_t a)
{
    return a == INT64_MIN ? INT64_MAX : -a;
}

/* Stacked bars per round: accepted, refused, dropped, and selected clients
 * that never answered; failed rounds get a red background. */
static void
participation_chart(FILE *f, const struct report *r)
{
    const char *title = "Participation per round (clients)";
    if (r->n == 0) {
        chart_empty(f, "chart-participation", title, "no rounds committed yet");
        return;
    }
    double hi = 1;
    for (size_t i = 0; i < r->n; i++) {
        const roost_store_round_info *ri = &r->rounds[i];
        double sum = (double)ri->n_accepted + (double)ri->n_refused +
                     (double)ri->n_dropped;
        hi = fmax(hi, fmax((double)ri->n_selected, sum));
    }
    struct chart c;
    chart_begin(&c, f, "chart-participation", title,
                (double)r->rounds[0].round_id,
                (double)r->rounds[r->n - 1].round_id, 0, hi * 1.1);
    double slot = (CH_W - PAD_L - PAD_R) / (c.x.hi - c.x.lo);
    double w = fmax(1.0, fmin(40.0, slot * 0.7));
    for (size_t i = 0; i < r->n; i++) {
        const roost_store_round_info *ri = &r->rounds[i];
        double x = px(&c, (double)ri->round_id) - w / 2;
        if (ri->state == ROOST_ROUND_FAILED)
            fprintf(f,
                    "<rect class=\"failed\" x=\"%.1f\" y=\"%.1f\" "
                    "width=\"%.1f\" height=\"%.1f\"><title>round %" PRId64
                    " failed (no quorum)</title></rect>\n",
                    x - (slot - w) / 2, PAD_T, slot, CH_H - PAD_T - PAD_B,
                    ri->round_id);
        int64_t silent =
            sat_add(sat_add(ri->n_selected, sat_neg(ri->n_accepted)),
                    sat_add(sat_neg(ri->n_refused), sat_neg(ri->n_dropped)));
        const int64_t parts[4] = {ri->n_accepted, ri->n_refused, ri->n_dropped,
                                  silent > 0 ? silent : 0};
        static const char *const cls[4] = {"s-acc", "s-ref", "s-drop", "s-sil"};
        static const char *const what[4] = {"accepted", "refused", "dropped",
                                            "no answer"};
        double base = 0;
        for (int k = 0; k < 4; k++) {
            if (parts[k] <= 0)
                continue;
            double top = base + (double)parts[k];
            fprintf(f,
                    "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                    "height=\"%.1f\"><title>round %" PRId64 ": %" PRId64
                    " %s of %" PRId64 " selected</title></rect>\n",
                    cls[k], x, py(&c, top), w, py(&c, base) - py(&c, top),
                    ri->round_id, parts[k], what[k], ri->n_selected);
            base = top;
        }
    }
    const char *names[] = {"accepted", "refused", "dropped", "no answer"};
    const char *cls[] = {"s-acc", "s-ref", "s-drop", "s-sil"};
    chart_legend(&c, names, cls, 4);
    fputs("</svg>\n", f);
}

/* ---------------------------------------------------------------------
 * The page.
 * ------------------------------------------------------------------- */
static const char page_css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,"
    "'DejaVu Sans',sans-serif;color:#1d2330;background:#f6f7f9;margin:0}\n"
    "main{max-width:1000px;margin:0 auto;padding:24px}\n"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}\n"
    ".sub{color:#5b6475;margin:0 0 16px}\n"
    ".card{background:#fff;border:1px solid #dde1e8;border-radius:6px;"
    "padding:12px 16px;margin:12px 0}\n"
    ".ok{border-left:6px solid #2e8b57}.bad{border-left:6px solid #c0392b;"
    "background:#fdf0ee}\n"
    "table{border-collapse:collapse;width:100%}\n"
    "th,td{padding:4px 8px;border-bottom:1px solid #e6e9ee;text-align:right;"
    "font-variant-numeric:tabular-nums}\n"
    "th{background:#eef1f5;font-weight:600}\n"
    "td.l,th.l{text-align:left}\n"
    ".kv td{text-align:left}.kv td:first-child{color:#5b6475;width:34%}\n"
    "code,.mono{font-family:'DejaVu Sans Mono',monospace;font-size:12px;"
    "word-break:break-all}\n"
    "pre{white-space:pre-wrap;word-break:break-all;font-size:12px;margin:0}\n"
    "svg.chart{width:100%;height:auto;background:#fff;border:1px solid "
    "#dde1e8;border-radius:6px;margin:8px 0}\n"
    ".ct{font-size:15px;font-weight:600;fill:#1d2330}\n"
    ".yl{font-size:11px;fill:#5b6475;text-anchor:end}\n"
    ".xl{font-size:11px;fill:#5b6475;text-anchor:middle}\n"
    ".xt{font-size:12px;fill:#5b6475;text-anchor:middle}\n"
    ".lg{font-size:12px;fill:#1d2330}\n"
    ".none{font-size:14px;fill:#8a93a3;text-anchor:middle}\n"
    ".grid{stroke:#eceff3;stroke-width:1}.tick{stroke:#8a93a3}\n"
    ".frame{fill:none;stroke:#c9ced8}\n"
    "path.ln{fill:none;stroke-width:2}circle.pt{stroke:#fff;stroke-width:1}"
    "\n"
    ".s-eacc{stroke:#1f77b4;fill:#1f77b4}.s-tacc{stroke:#ff7f0e;"
    "fill:#ff7f0e}\n"
    ".s-eloss{stroke:#1f77b4;fill:#1f77b4}.s-tloss{stroke:#ff7f0e;"
    "fill:#ff7f0e}\n"
    ".s-min{stroke:#7fb3d5;fill:#7fb3d5}.s-med{stroke:#6c3483;"
    "fill:#6c3483}.s-max{stroke:#c0392b;fill:#c0392b}\n"
    ".s-cdp{stroke:#2e8b57;fill:#2e8b57;stroke-dasharray:6 3}\n"
    ".s-band{fill:#d7bde2;opacity:.45;stroke:none}\n"
    ".s-acc{fill:#2e8b57}.s-ref{fill:#e67e22}.s-drop{fill:#95a5a6}"
    ".s-sil{fill:#d5dbe0}\n"
    "rect.sw{stroke:none}.failed{fill:#fadbd8}\n"
    "#rounds{font-size:12px}#rounds td.l{white-space:nowrap}\n"
    ".scroll{overflow-x:auto}\n"
    "details{margin:12px 0}summary{cursor:pointer;font-weight:600}\n"
    "footer{color:#8a93a3;font-size:12px;margin-top:24px}\n";

static void
kv_row(FILE *f, const char *key, const char *value_html)
{
    fprintf(f, "<tr><td>%s</td><td>%s</td></tr>\n", key, value_html);
}

static void
write_page(FILE *f, const struct report *r, const char *title)
{
    char a[64], b[64], line[256];
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta "
          "charset=\"utf-8\"/>\n<meta name=\"viewport\" "
          "content=\"width=device-width,initial-scale=1\"/>\n<title>",
          f);
    html_escape(f, title);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<main>\n",
            page_css);
    fputs("<h1>", f);
    html_escape(f, title);
    fputs("</h1>\n<p class=\"sub\">Roost run report from <span "
          "class=\"mono\">",
          f);
    html_escape(f, r->db);
    char now[64];
    fmt_time(now, sizeof(now), (int64_t)time(NULL) * 1000);
    fprintf(f, "</span>, generated %s by roost %s</p>\n", now,
            roost_version_string());

    /* Chain status. */
    char hex[65];
    if (r->chain_rc == ROOST_OK) {
        roost_store_hex(r->chain_head, hex);
        fprintf(f,
                "<div id=\"chain\" class=\"card ok\"><b>Hash chain intact"
                "</b>: %" PRId64 " round records verified",
                r->chain_rounds);
        if (r->chain_rounds > 0)
            fprintf(f, "; head <code>%s</code>", hex);
        fputs("</div>\n", f);
    } else {
        fprintf(f,
                "<div id=\"chain\" class=\"card bad\"><b>Hash chain BROKEN"
                "</b> (first bad round %" PRId64 "): ",
                r->chain_bad);
        html_escape(f, r->chain_msg);
        fputs(". The record has been altered or damaged; do not trust the "
              "figures below without investigating (roost audit).</div>\n",
              f);
    }

    /* Summary. */
    size_t committed = 0, failed = 0;
    int64_t examples = 0;
    double best_acc = NOT_MEASURED, last_acc = NOT_MEASURED;
    double last_loss = NOT_MEASURED;
    int64_t best_round = 0;
    for (size_t i = 0; i < r->n; i++) {
        const roost_store_round_info *ri = &r->rounds[i];
        if (ri->state == ROOST_ROUND_FAILED)
            failed++;
        else
            committed++;
        examples = sat_add(examples, ri->examples);
        if (isfinite(ri->eval_accuracy)) {
            last_acc = ri->eval_accuracy;
            if (!(ri->eval_accuracy <= best_acc)) {
                best_acc = ri->eval_accuracy;
                best_round = ri->round_id;
            }
        }
        double loss = isfinite(ri->eval_loss) ? ri->eval_loss : ri->train_loss;
        if (isfinite(loss))
            last_loss = loss;
    }
    fputs("<h2>Summary</h2>\n<div class=\"card\"><table class=\"kv\" "
          "id=\"summary\">\n",
          f);
    if (r->run != NULL) {
        fputs("<tr><td>run</td><td>", f);
        fprintf(f, "%" PRId64, r->run->run_id);
        if (r->run->name != NULL) {
            fputs(" &#8212; ", f);
            html_escape(f, r->run->name);
        }
        fmt_time(a, sizeof(a), r->run->created_ms);
        fprintf(f, " (started %s)</td></tr>\n", a);
        fputs("<tr><td>model</td><td><code>", f);
        html_escape(f, r->run->model_spec);
        fprintf(f, "</code>, %" PRIu64 " parameters</td></tr>\n",
                r->run->n_params);
        fputs("<tr><td>strategy</td><td>", f);
        html_escape(f, r->run->strategy);
        fputs("</td></tr>\n", f);
    } else {
        kv_row(f, "run", "none recorded");
    }
    snprintf(line, sizeof(line), "%zu committed, %zu failed (no quorum)",
             committed, failed);
    kv_row(f, "rounds", line);
    if (r->n > 0) {
        const roost_store_round_info *last = &r->rounds[r->n - 1];
        fmt_time(b, sizeof(b), last->committed_ms);
        snprintf(line, sizeof(line), "%" PRId64 " at %s", last->round_id, b);
        kv_row(f, "last round", line);
    }
    fmt_num(a, sizeof(a), last_acc);
    fmt_num(b, sizeof(b), best_acc);
    snprintf(line, sizeof(line), "%s (last); best %s in round %" PRId64, a, b,
             best_round);
    kv_row(f, "held-out accuracy", isfinite(best_acc) ? line : "not measured");
    fmt_num(a, sizeof(a), last_loss);
    kv_row(f, "last loss", a);
    snprintf(a, sizeof(a), "%" PRId64, examples);
    kv_row(f, "examples aggregated", a);
    snprintf(a, sizeof(a), "%" PRId64, r->clients);
    kv_row(f, "clients seen", a);
    if (r->eps_all.n_clients > 0) {
        char e1[32], e2[32], e3[32];
        fmt_num(e1, sizeof(e1), r->eps_all.min);
        fmt_num(e2, sizeof(e2), r->eps_all.median);
        fmt_num(e3, sizeof(e3), r->eps_all.max);
        snprintf(line, sizeof(line),
                 "min %s, median %s, max %s over %" PRId64 " clients", e1, e2,
                 e3, r->eps_all.n_clients);
        kv_row(f, "epsilon spent (latest report)", line);
    } else {
        kv_row(f, "epsilon spent (latest report)", "no client reported one");
    }
    fputs("</table></div>\n", f);

    /* Charts. */
    size_t n = r->n ? r->n : 1;
    double *buf = calloc(9 * n, sizeof(double));
    if (buf == NULL) {
        fputs("<p>out of memory drawing the charts</p>\n", f);
    } else {
        double *eacc = buf, *tacc = buf + n, *eloss = buf + 2 * n;
        double *tloss = buf + 3 * n, *emin = buf + 4 * n;
        double *emed = buf + 5 * n, *emax = buf + 6 * n, *cdp = buf + 7 * n;
        for (size_t i = 0; i < r->n; i++) {
            const roost_store_round_info *ri = &r->rounds[i];
            eacc[i] = ri->eval_accuracy;
            tacc[i] = ri->train_accuracy;
            eloss[i] = ri->eval_loss;
            tloss[i] = ri->train_loss;
            emin[i] = r->eps[i].min;
            emed[i] = r->eps[i].median;
            emax[i] = r->eps[i].max;
            cdp[i] = ri->has_central_dp ? ri->cdp_epsilon : NOT_MEASURED;
        }
        fputs("<h2>Per round</h2>\n", f);
        const double *acc[] = {eacc, tacc};
        const char *acc_names[] = {"held-out (global model)",
                                   "reported by clients"};
        const char *acc_cls[] = {"s-eacc", "s-tacc"};
        line_chart(f, r, "chart-accuracy", "Accuracy", acc, acc_names, acc_cls,
                   2, true);
        const double *loss[] = {eloss, tloss};
        const char *loss_cls[] = {"s-eloss", "s-tloss"};
        line_chart(f, r, "chart-loss", "Loss", loss, acc_names, loss_cls, 2,
                   false);
        epsilon_chart(f, r, emin, emed, emax, cdp);
        participation_chart(f, r);
        free(buf);
    }

    /* Every round. */
    fprintf(f,
            "<details%s><summary>All %zu rounds</summary>\n<div "
            "class=\"scroll\"><table "
            "id=\"rounds\">\n<tr><th>round</th><th class=\"l\">state</th>"
            "<th>selected</th><th>accepted</th><th>refused</th>"
            "<th>dropped</th><th>examples</th><th>held-out acc.</th>"
            "<th>held-out loss</th><th>train loss</th><th>&#949; median</th>"
            "<th>&#949; max</th><th>central &#949;</th><th>seconds</th></tr>\n",
            r->n <= 50 ? " open=\"open\"" : "", r->n);
    for (size_t i = 0; i < r->n; i++) {
        const roost_store_round_info *ri = &r->rounds[i];
        char v[8][40];
        fmt_num(v[0], sizeof(v[0]), ri->eval_accuracy);
        fmt_num(v[1], sizeof(v[1]), ri->eval_loss);
        fmt_num(v[2], sizeof(v[2]), ri->train_loss);
        fmt_num(v[3], sizeof(v[3]), r->eps[i].median);
        fmt_num(v[4], sizeof(v[4]), r->eps[i].max);
        fmt_num(v[5], sizeof(v[5]),
                ri->has_central_dp ? ri->cdp_epsilon : NOT_MEASURED);
        fmt_num(v[6], sizeof(v[6]),
                ri->committed_ms > ri->started_ms && ri->started_ms > 0
                    ? (double)(ri->committed_ms - ri->started_ms) / 1000.0
                    : NOT_MEASURED);
        /* The kind comes from the file like every other string here:
         * escaped (a stored value is not trusted to be "train"/"eval"). */
        fprintf(f, "<tr><td>%" PRId64 "</td><td class=\"l\">", ri->round_id);
        if (strcmp(ri->kind, "train") != 0)
            html_escape(f, ri->kind);
        fprintf(f,
                " %s</td><td>%" PRId64 "</td><td>%" PRId64 "</td><td>%" PRId64
                "</td><td>%" PRId64 "</td><td>%" PRId64
                "</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                "<td>%s</td><td>%s</td></tr>\n",
                ri->state == ROOST_ROUND_FAILED ? "failed" : "committed",
                ri->n_selected, ri->n_accepted, ri->n_refused, ri->n_dropped,
                ri->examples, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    }
    fputs("</table></div>\n</details>\n", f);

    if (r->run != NULL && (r->run->config_json || r->run->dp_json)) {
        fputs("<h2>Settings recorded with the run</h2>\n<div "
              "class=\"card\">",
              f);
        if (r->run->config_json) {
            fputs("<p>configuration</p><pre>", f);
            html_escape(f, r->run->config_json);
            fputs("</pre>", f);
        }
        if (r->run->dp_json) {
            fputs("<p>DP parameters sent to clients</p><pre>", f);
            html_escape(f, r->run->dp_json);
            fputs("</pre>", f);
        }
        fputs("</div>\n", f);
    }
    fputs("<footer>Epsilon is what each client reports having spent, as "
          "computed by its own accountant; the coordinator records it but "
          "is not trusted with the budget. Verify the record independently "
          "with <code>roost audit --db FILE</code>.</footer>\n"
          "</main>\n</body>\n</html>\n",
          f);
}

/* ---------------------------------------------------------------------
 * Reading the store.
 * ------------------------------------------------------------------- */
static int
load(struct report *r, roost_store *s, roost_errmsg *em)
{
    int err = roost_store_get_run(s, 0, &r->run, em);
    if (err == ROOST_ENOENT)
        err = ROOST_OK;
    size_t cap = 0;
    while (err == ROOST_OK) {
        if (r->n == cap) {
            if (cap >= ROUND_CAP)
                return roost_fail(em, ROOST_ETOOBIG,
                                  "more than %d rounds: too many for one page",
                                  ROUND_CAP);
            size_t ncap = cap ? 2 * cap : 256;
            roost_store_round_info *p = realloc(r->rounds, ncap * sizeof(*p));
            if (p == NULL)
                return roost_fail(em, ROOST_ENOMEM, "out of memory");
            r->rounds = p;
            cap = ncap;
        }
        /* The largest id ends the listing: id + 1 would overflow (the
         * file may have been edited) and list the rounds again. */
        if (r->n > 0 && r->rounds[r->n - 1].round_id == INT64_MAX)
            break;
        int64_t next = r->n ? r->rounds[r->n - 1].round_id + 1 : 1;
        size_t got = 0;
        err = roost_store_list_rounds(s, next, r->rounds + r->n, cap - r->n,
                                      &got, em);
        r->n += got;
        if (got == 0)
            break;
    }
    if (err != ROOST_OK)
        return err;
    r->eps = calloc(r->n ? r->n : 1, sizeof(*r->eps));
    if (r->eps == NULL)
        return roost_fail(em, ROOST_ENOMEM, "out of memory");
    for (size_t i = 0; i < r->n && err == ROOST_OK; i++)
        err =
            roost_store_epsilon_stats(s, r->rounds[i].round_id, &r->eps[i], em);
    if (err == ROOST_OK)
        err = roost_store_epsilon_stats(s, 0, &r->eps_all, em);
    if (err == ROOST_OK)
        err = roost_store_count_clients(s, &r->clients, em);
    if (err != ROOST_OK)
        return err;
    roost_errmsg cem;
    roost_errmsg_clear(&cem);
    r->chain_rc = roost_store_verify_chain(s, &r->chain_bad, &r->chain_rounds,
                                           r->chain_head, &cem);
    snprintf(r->chain_msg, sizeof(r->chain_msg), "%s", cem.text);
    if (r->chain_rc == ROOST_ESTORE)
        return roost_fail(em, ROOST_ESTORE, "%s", cem.text);
    return ROOST_OK;
}

int
roost_cmd_report(int argc, char **argv)
{
    const char *db = NULL, *out = NULL, *title = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(report_usage, stdout);
            return ROOST_EXIT_OK;
        }
        const char **dst = strcmp(a, "--db") == 0 ? &db
                           : (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0)
                               ? &out
                           : strcmp(a, "--title") == 0 ? &title
                                                       : NULL;
        if (dst == NULL) {
            fprintf(stderr,
                    "roost report: unknown flag '%s' (see 'roost report "
                    "--help')\n",
                    a);
            return ROOST_EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "roost report: %s needs a value\n", a);
            return ROOST_EXIT_USAGE;
        }
        *dst = argv[++i];
    }
    if (db == NULL || out == NULL) {
        fprintf(stderr, "roost report: --db FILE and -o FILE are required\n");
        return ROOST_EXIT_USAGE;
    }

    struct report r;
    memset(&r, 0, sizeof(r));
    r.db = db;
    roost_store *s = NULL;
    roost_errmsg em;
    int err = roost_store_open(&s, db, ROOST_STORE_READONLY, &em);
    /* One snapshot for the figures and the chain's verdict on them, while
     * the coordinator may be committing. */
    if (err == ROOST_OK)
        err = roost_store_read_begin(s, &em);
    if (err == ROOST_OK) {
        err = load(&r, s, &em);
        roost_store_read_end(s);
    }
    roost_store_close(s);
    int status = ROOST_EXIT_OK;
    if (err != ROOST_OK) {
        fprintf(stderr, "roost report: %s: %s\n", db, em.text);
        status = ROOST_EXIT_FAIL;
    } else {
        char deftitle[160];
        if (title == NULL) {
            snprintf(deftitle, sizeof(deftitle), "Roost run %s",
                     r.run && r.run->name ? r.run->name : "report");
            title = deftitle;
        }
        bool to_stdout = strcmp(out, "-") == 0;
        FILE *f = to_stdout ? stdout : fopen(out, "w");
        if (f == NULL) {
            fprintf(stderr, "roost report: cannot write %s\n", out);
            status = ROOST_EXIT_FAIL;
        } else {
            write_page(f, &r, title);
            bool bad = ferror(f) != 0;
            if (!to_stdout)
                bad = fclose(f) != 0 || bad;
            else
                bad = fflush(f) != 0 || bad;
            if (bad) {
                fprintf(stderr, "roost report: error writing %s\n", out);
                status = ROOST_EXIT_FAIL;
            } else if (!to_stdout) {
                fprintf(stderr, "roost report: wrote %s (%zu rounds%s)\n", out,
                        r.n,
                        r.chain_rc == ROOST_OK ? ", chain intact"
                                               : ", CHAIN BROKEN");
            }
        }
    }
    roost_store_run_info_free(r.run);
    free(r.rounds);
    free(r.eps);
    return status;
}
