/*
 * rng.c - the CSPRNG: AES-256 in counter mode under a 256-bit key, the
 * keystream being the encryptions of the counter blocks 0, 1, 2, ...
 * (a 128-bit big-endian counter, exactly OpenSSL's EVP_aes_256_ctr with a
 * zero IV). On CPUs with VAES and AVX-512 the blocks are computed here,
 * sixteen at a time in four 512-bit registers (about twice the speed of
 * OpenSSL 3.0's AES-NI code, which does one block per instruction); on
 * every other CPU OpenSSL's EVP computes them. Both paths give the same
 * bytes (tests/common/test_rng.c checks them against each other and
 * against EVP), so a seeded keystream is the same on any machine.
 *
 * Invariants: `block` counts the keystream blocks produced so far, on
 * either path; while the EVP path is in use, the EVP context's counter
 * equals it (evp_seek restores that when a test switches paths). Output is
 * handed out in whole blocks: buf[pos..ROOST_RNG_BUF) holds keystream not yet
 * handed out; each byte is handed out at most once, in keystream order,
 * whatever the sizes of the requests (large requests take whole blocks directly
 * and the rest from a refilled buf, so the stream is the same). Handed-out
 * bytes are wiped from buf, and the key schedule on destroy. No locking:
 * one generator belongs to one thread.
 */
#include "common/rng.h"
#include "common/rng_int.h"

#include "common/alloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define RNG_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#define ROOST_RNG_BUF 4096
#define RNG_BLOCK 16
#define RNG_ROUNDS 14 /* AES-256 */

struct roost_rng {
    const roost_allocator *alloc;
    EVP_CIPHER_CTX *ctx; /* portable path */
    bool insecure;
    bool vaes_ok;   /* the CPU has VAES; rk holds the schedule */
    bool vaes;      /* blocks computed by vaes_blocks (implies vaes_ok) */
    uint64_t block; /* next counter block */
    size_t pos;
    /* AES-256 encryption round keys for the VAES path. */
    unsigned char rk[(RNG_ROUNDS + 1) * RNG_BLOCK];
    unsigned char buf[ROOST_RNG_BUF];
};

static const unsigned char zeros[ROOST_RNG_BUF];

#ifdef RNG_X86
/* VAES on 512-bit registers: AVX-512F/BW (which the compiler's check also
 * requires the OS to enable), AES-NI for the key schedule, and the VAES
 * bit of CPUID leaf 7 (ECX bit 9), read directly because not every
 * compiler's __builtin_cpu_supports knows it. */
static bool
cpu_has_vaes(void)
{
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__builtin_cpu_supports("avx512f") ||
        !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("aes"))
        return false;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0)
        return false;
    return (c & (1u << 9)) != 0;
}

/* One step of the AES-256 key schedule (FIPS-197, 5.2) with
 * AESKEYGENASSIST: w is the previous same-parity round key, t the assist
 * of the other one; lane selects RotWord(SubWord) (3) or SubWord (2). */
__attribute__((target("aes"))) static inline __m128i
schedule_step(__m128i w, __m128i t)
{
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
    return _mm_xor_si128(w, t);
}

__attribute__((target("aes"))) static void
expand_key(const unsigned char key[32], unsigned char *rk)
{
    __m128i a = _mm_loadu_si128((const __m128i *)(const void *)key);
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(key + 16));
    __m128i k[RNG_ROUNDS + 1];
    k[0] = a;
    k[1] = b;
    /* The round constant must be an immediate, hence the unrolling. */
#define RNG_EVEN(i, rcon)                                                      \
    a = schedule_step(                                                         \
        a, _mm_shuffle_epi32(_mm_aeskeygenassist_si128(b, rcon), 0xff));       \
    k[i] = a
#define RNG_ODD(i)                                                             \
    b = schedule_step(                                                         \
        b, _mm_shuffle_epi32(_mm_aeskeygenassist_si128(a, 0), 0xaa));          \
    k[i] = b
    RNG_EVEN(2, 0x01);
    RNG_ODD(3);
    RNG_EVEN(4, 0x02);
    RNG_ODD(5);
    RNG_EVEN(6, 0x04);
    RNG_ODD(7);
    RNG_EVEN(8, 0x08);
    RNG_ODD(9);
    RNG_EVEN(10, 0x10);
    RNG_ODD(11);
    RNG_EVEN(12, 0x20);
    RNG_ODD(13);
    RNG_EVEN(14, 0x40);
#undef RNG_EVEN
#undef RNG_ODD
    for (int i = 0; i <= RNG_ROUNDS; i++)
        _mm_storeu_si128((__m128i *)(void *)(rk + RNG_BLOCK * i), k[i]);
    OPENSSL_cleanse(k, sizeof(k));
}

/* Counter blocks first..first+n-1 encrypted into out, four blocks per
 * 512-bit register. A lane holds the counter as a little-endian 64-bit
 * integer in its low half; the shuffle turns it into the big-endian block
 * 0^64 || counter (the counter never reaches 2^64). */
__attribute__((target("avx512f,avx512bw,vaes,aes"))) static void
vaes_blocks(const unsigned char *rk, uint64_t first, unsigned char *out,
            size_t n)
{
    __m512i k[RNG_ROUNDS + 1];
    for (int i = 0; i <= RNG_ROUNDS; i++)
        k[i] = _mm512_broadcast_i32x4(
            _mm_loadu_si128((const __m128i *)(const void *)(rk + 16 * i)));
    const __m512i bswap = _mm512_broadcast_i32x4(
        _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m512i four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    __m512i c = _mm512_add_epi64(_mm512_set1_epi64((long long)first),
                                 _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0));
    c = _mm512_mask_blend_epi64(0xAA, c, _mm512_setzero_si512());
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i x0 = _mm512_shuffle_epi8(c, bswap);
        c = _mm512_add_epi64(c, four);
        __m512i x1 = _mm512_shuffle_epi8(c, bswap);
        c = _mm512_add_epi64(c, four);
        __m512i x2 = _mm512_shuffle_epi8(c, bswap);
        c = _mm512_add_epi64(c, four);
        __m512i x3 = _mm512_shuffle_epi8(c, bswap);
        c = _mm512_add_epi64(c, four);
        x0 = _mm512_xor_si512(x0, k[0]);
        x1 = _mm512_xor_si512(x1, k[0]);
        x2 = _mm512_xor_si512(x2, k[0]);
        x3 = _mm512_xor_si512(x3, k[0]);
        for (int r = 1; r < RNG_ROUNDS; r++) {
            x0 = _mm512_aesenc_epi128(x0, k[r]);
            x1 = _mm512_aesenc_epi128(x1, k[r]);
            x2 = _mm512_aesenc_epi128(x2, k[r]);
            x3 = _mm512_aesenc_epi128(x3, k[r]);
        }
        unsigned char *o = out + RNG_BLOCK * i;
        _mm512_storeu_si512(o, _mm512_aesenclast_epi128(x0, k[RNG_ROUNDS]));
        _mm512_storeu_si512(o + 64,
                            _mm512_aesenclast_epi128(x1, k[RNG_ROUNDS]));
        _mm512_storeu_si512(o + 128,
                            _mm512_aesenclast_epi128(x2, k[RNG_ROUNDS]));
        _mm512_storeu_si512(o + 192,
                            _mm512_aesenclast_epi128(x3, k[RNG_ROUNDS]));
    }
    /* The last n % 16 blocks, four at a time with a masked store. */
    for (; i < n; i += 4) {
        size_t left = n - i < 4 ? n - i : 4;
        __mmask64 m = left == 4 ? ~(__mmask64)0
                                : (((__mmask64)1 << (RNG_BLOCK * left)) - 1);
        __m512i x = _mm512_xor_si512(_mm512_shuffle_epi8(c, bswap), k[0]);
        c = _mm512_add_epi64(c, four);
        for (int r = 1; r < RNG_ROUNDS; r++)
            x = _mm512_aesenc_epi128(x, k[r]);
        _mm512_mask_storeu_epi8(out + RNG_BLOCK * i, m,
                                _mm512_aesenclast_epi128(x, k[RNG_ROUNDS]));
    }
    /* The broadcast round keys live in registers or this frame; clear
     * the frame's copy (registers are overwritten by later code). */
    OPENSSL_cleanse(k, sizeof(k));
}
#endif

#ifdef RNG_X86
/* Point the EVP context's counter at block `block` (key unchanged). */
static int
evp_seek(roost_rng *rng)
{
    unsigned char iv[RNG_BLOCK] = {0};
    for (int i = 0; i < 8; i++)
        iv[15 - i] = (unsigned char)(rng->block >> (8 * i));
    return EVP_EncryptInit_ex(rng->ctx, NULL, NULL, NULL, iv) == 1
               ? ROOST_OK
               : ROOST_ECRYPTO;
}
#endif

/* The next n keystream blocks into out. */
static int
blocks(roost_rng *rng, unsigned char *out, size_t n)
{
#ifdef RNG_X86
    if (rng->vaes) {
        vaes_blocks(rng->rk, rng->block, out, n);
        rng->block += n;
        return ROOST_OK;
    }
#endif
    while (n > 0) {
        size_t take =
            n > ROOST_RNG_BUF / RNG_BLOCK ? ROOST_RNG_BUF / RNG_BLOCK : n;
        int outl = 0;
        if (EVP_EncryptUpdate(rng->ctx, out, &outl, zeros,
                              (int)(take * RNG_BLOCK)) != 1 ||
            (size_t)outl != take * RNG_BLOCK)
            return ROOST_ECRYPTO;
        rng->block += take;
        out += take * RNG_BLOCK;
        n -= take;
    }
    return ROOST_OK;
}

static int
rng_init(roost_rng **out, const roost_allocator *alloc,
         const unsigned char key[32], bool insecure)
{
    *out = NULL;
    roost_rng *rng = roost_alloc_malloc(alloc, sizeof(*rng));
    if (rng == NULL)
        return ROOST_ENOMEM;
    memset(rng, 0, offsetof(struct roost_rng, buf));
    rng->alloc = alloc;
    rng->insecure = insecure;
    rng->pos = ROOST_RNG_BUF;
    rng->ctx = EVP_CIPHER_CTX_new();
    /* A fresh key per generator makes counter blocks from zero safe. */
    unsigned char iv[RNG_BLOCK] = {0};
    if (rng->ctx == NULL ||
        EVP_EncryptInit_ex(rng->ctx, EVP_aes_256_ctr(), NULL, key, iv) != 1) {
        EVP_CIPHER_CTX_free(rng->ctx);
        roost_alloc_free(alloc, rng);
        return ROOST_ECRYPTO;
    }
#ifdef RNG_X86
    rng->vaes_ok = cpu_has_vaes();
    rng->vaes = rng->vaes_ok;
    if (rng->vaes_ok)
        expand_key(key, rng->rk);
#endif
    *out = rng;
    return ROOST_OK;
}

int
roost_rng_create(roost_rng **out, const roost_allocator *alloc)
{
    unsigned char key[32];
    if (out == NULL)
        return ROOST_EINVAL;
    *out = NULL;
    if (RAND_priv_bytes(key, sizeof(key)) != 1)
        return ROOST_ECRYPTO;
    int rc = rng_init(out, alloc, key, false);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int
roost_rng_create_insecure_deterministic(roost_rng **out,
                                        const roost_allocator *alloc,
                                        uint64_t seed, uint64_t stream)
{
    static const char label[] = "roost insecure deterministic rng v1";
    unsigned char material[sizeof(label) + 16];
    unsigned char key[32];
    unsigned int key_len = 0;
    if (out == NULL)
        return ROOST_EINVAL;
    *out = NULL;
    memcpy(material, label, sizeof(label));
    for (int i = 0; i < 8; i++) {
        material[sizeof(label) + i] = (unsigned char)(seed >> (8 * i));
        material[sizeof(label) + 8 + i] = (unsigned char)(stream >> (8 * i));
    }
    if (EVP_Digest(material, sizeof(material), key, &key_len, EVP_sha256(),
                   NULL) != 1 ||
        key_len != sizeof(key))
        return ROOST_ECRYPTO;
    return rng_init(out, alloc, key, true);
}

int
roost_rng_split(roost_rng *parent, roost_rng **out)
{
    unsigned char key[32];
    if (parent == NULL || out == NULL)
        return ROOST_EINVAL;
    *out = NULL;
    int rc = roost_rng_bytes(parent, key, sizeof(key));
    if (rc == ROOST_OK)
        rc = rng_init(out, parent->alloc, key, parent->insecure);
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

void
roost_rng_destroy(roost_rng *rng)
{
    if (rng == NULL)
        return;
    EVP_CIPHER_CTX_free(rng->ctx); /* wipes its key schedule */
    const roost_allocator *alloc = rng->alloc;
    OPENSSL_cleanse(rng, sizeof(*rng)); /* ours, and buf */
    roost_alloc_free(alloc, rng);
}

bool
roost_rng_is_insecure(const roost_rng *rng)
{
    return rng != NULL && rng->insecure;
}

static int
refill(roost_rng *rng)
{
    int rc = blocks(rng, rng->buf, ROOST_RNG_BUF / RNG_BLOCK);
    if (rc == ROOST_OK)
        rng->pos = 0;
    return rc;
}

int
roost_rng_bytes(roost_rng *rng, void *buf, size_t n)
{
    unsigned char *dst = buf;
    while (n > 0) {
        /* Once the buffered keystream is used up, a request of at least a
         * buffer's worth takes its whole blocks directly (bulk consumers
         * such as DP noise skip the copy through buf and its wipe); the
         * last partial block, if any, comes from a refill. */
        if (rng->pos == ROOST_RNG_BUF && n >= ROOST_RNG_BUF) {
            size_t whole = n / RNG_BLOCK;
            int rc = blocks(rng, dst, whole);
            if (rc != ROOST_OK)
                return rc;
            dst += whole * RNG_BLOCK;
            n -= whole * RNG_BLOCK;
            continue;
        }
        if (rng->pos == ROOST_RNG_BUF) {
            int rc = refill(rng);
            if (rc != ROOST_OK)
                return rc;
        }
        size_t take = ROOST_RNG_BUF - rng->pos;
        if (take > n)
            take = n;
        memcpy(dst, rng->buf + rng->pos, take);
        /* Wipe what was handed out so the buffer never holds a copy of
         * output already used as noise. */
        memset(rng->buf + rng->pos, 0, take);
        rng->pos += take;
        dst += take;
        n -= take;
    }
    return ROOST_OK;
}

int
roost_rng_u64(roost_rng *rng, uint64_t *out)
{
    return roost_rng_bytes(rng, out, sizeof(*out));
}

int
roost_rng_below(roost_rng *rng, uint64_t bound, uint64_t *out)
{
    if (bound == 0)
        return ROOST_EINVAL;
    /* Rejection sampling: accept x only below the largest multiple of
     * bound that fits in 64 bits. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
    uint64_t x;
    do {
        int rc = roost_rng_u64(rng, &x);
        if (rc != ROOST_OK)
            return rc;
    } while (x >= limit);
    *out = x % bound;
    return ROOST_OK;
}

int
roost_rng_uniform(roost_rng *rng, double *out)
{
    uint64_t x;
    int rc = roost_rng_u64(rng, &x);
    if (rc != ROOST_OK)
        return rc;
    *out = (double)(x >> 11) * 0x1.0p-53;
    return ROOST_OK;
}

/* ---- test hooks (rng_int.h) ---------------------------------------------- */

int
roost_rng_debug_create_with_key(roost_rng **out, const unsigned char key[32])
{
    if (out == NULL || key == NULL)
        return ROOST_EINVAL;
    return rng_init(out, NULL, key, true);
}

bool
roost_rng_debug_use_vaes(roost_rng *rng, bool on)
{
#ifdef RNG_X86
    if (on && rng->vaes_ok)
        rng->vaes = true; /* block already counts what EVP produced */
    if (!on && rng->vaes) {
        rng->vaes = false;
        if (evp_seek(rng) != ROOST_OK)
            return false;
    }
    return rng->vaes;
#else
    (void)on;
    (void)rng;
    return false;
#endif
}
