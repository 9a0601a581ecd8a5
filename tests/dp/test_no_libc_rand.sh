#!/bin/sh
# test_no_libc_rand.sh SOURCE_DIR - lint: no C source under common/, dp/,
# client/ or server/ calls the C library's non-cryptographic generators
# (rand, random, srand, srandom, rand_r, and the drand48 family). All
# randomness must come from the CSPRNG layer (common/rng.h).
#
# Comments are stripped first, so prose such as "never use rand()" is
# allowed; a call in code or in a macro is not. Before scanning the tree
# the script checks its own detector on planted samples, so a broken
# pattern cannot make the test pass vacuously.
set -u
src=${1:?usage: test_no_libc_rand.sh SOURCE_DIR}

# scan FILE... - print "file:line: text" for each offending call.
scan() {
    perl -e '
        my $bad = qr/(?<![A-Za-z0-9_.>])(?:rand|random|srand|srandom|rand_r|
                     [dejlmn]rand48|srand48|seed48|lcong48)\s*\(/x;
        for my $f (@ARGV) {
            open(my $fh, "<", $f) or die "$f: $!";
            local $/; my $text = <$fh>; close $fh;
            # Blank out comments but keep newlines, so line numbers hold.
            $text =~ s{/\*.*?\*/}{ (my $c = $&) =~ s/[^\n]/ /g; $c }gse;
            $text =~ s{//[^\n]*}{}g;
            my $n = 0;
            for my $line (split /\n/, $text, -1) {
                $n++;
                print "$f:$n: $line\n" if $line =~ $bad;
            }
        }' "$@"
}

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/planted.c" <<'C'
/* rand() and drand48() in a comment are fine */
// so is srand(1) here
static int ok(void) { return roost_rand(3) + s.random(2) + p->rand(1); }
static int bad1(void) { return rand(); }
static double bad2(void) { return drand48 (); }
static void bad3(void) { srand(42); }
static long bad4(void) { return random(); }
C
hits=$(scan "$tmp/planted.c" | wc -l)
if [ "$hits" -ne 4 ]; then
    echo "self-test failed: expected 4 planted calls, found $hits" >&2
    scan "$tmp/planted.c" >&2
    exit 1
fi

files=$(find "$src/common" "$src/dp" "$src/client" "$src/server" \
        -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null)
if [ -z "$files" ]; then
    echo "no sources found under $src" >&2
    exit 1
fi
# shellcheck disable=SC2086
found=$(scan $files)
if [ -n "$found" ]; then
    echo "libc random number generator called (use common/rng.h):" >&2
    echo "$found" >&2
    exit 1
fi
echo "no libc rand/random/drand48 calls in $(echo "$files" | wc -l) files"
