/*
 * rng.c - ChaCha20 keystream generator on OpenSSL's EVP interface.
 *
 * Invariant: buf[pos..ROOST_RNG_BUF) holds keystream not yet handed out;
 * each byte is handed out at most once, in keystream order, whatever the
 * sizes of the requests (large requests bypass buf once it is empty, so the
 * stream is the same). Refills encrypt a zero block, which yields the raw
 * keystream. The key is wiped on destroy. No locking: one
 * generator belongs to one thread.
 */
#include "common/rng.h"

#include "common/alloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#define ROOST_RNG_BUF 4096

struct roost_rng {
    const roost_allocator *alloc;
    EVP_CIPHER_CTX *ctx;
    bool insecure;
    size_t pos;
    unsigned char buf[ROOST_RNG_BUF];
};

static const unsigned char zeros[ROOST_RNG_BUF];

static int
rng_init(roost_rng **out, const roost_allocator *alloc,
         const unsigned char key[32], bool insecure)
{
    *out = NULL;
    roost_rng *rng = roost_alloc_malloc(alloc, sizeof(*rng));
    if (rng == NULL)
        return ROOST_ENOMEM;
    rng->alloc = alloc;
    rng->insecure = insecure;
    rng->pos = ROOST_RNG_BUF;
    rng->ctx = EVP_CIPHER_CTX_new();
    /* The 16-byte IV of OpenSSL's ChaCha20 is a 32-bit block counter and a
     * 96-bit nonce; a fresh key per generator makes a zero IV safe. */
    unsigned char iv[16] = {0};
    if (rng->ctx == NULL ||
        EVP_EncryptInit_ex(rng->ctx, EVP_chacha20(), NULL, key, iv) != 1) {
        EVP_CIPHER_CTX_free(rng->ctx);
        roost_alloc_free(alloc, rng);
        return ROOST_ECRYPTO;
    }
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
    EVP_CIPHER_CTX_free(rng->ctx); /* wipes the key schedule */
    const roost_allocator *alloc = rng->alloc;
    OPENSSL_cleanse(rng, sizeof(*rng));
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
    int outl = 0;
    if (EVP_EncryptUpdate(rng->ctx, rng->buf, &outl, zeros, ROOST_RNG_BUF) !=
            1 ||
        outl != ROOST_RNG_BUF)
        return ROOST_ECRYPTO;
    rng->pos = 0;
    return ROOST_OK;
}

/* Keystream straight into the caller's buffer: ChaCha20 over the constant
 * zero block, a block at a time (no memset, no copy). Used for large
 * requests so bulk consumers (DP noise) skip the copy through buf and the
 * wipe of it; the bytes are the same ones the buffered path would give. */
static int
direct(roost_rng *rng, unsigned char *dst, size_t n)
{
    while (n > 0) {
        size_t take = n > ROOST_RNG_BUF ? ROOST_RNG_BUF : n;
        int outl = 0;
        if (EVP_EncryptUpdate(rng->ctx, dst, &outl, zeros, (int)take) != 1 ||
            (size_t)outl != take)
            return ROOST_ECRYPTO;
        dst += take;
        n -= take;
    }
    return ROOST_OK;
}

int
roost_rng_bytes(roost_rng *rng, void *buf, size_t n)
{
    unsigned char *dst = buf;
    while (n > 0) {
        /* Once the buffered keystream is used up, a request of at least a
         * buffer's worth takes the rest of its bytes directly. */
        if (rng->pos == ROOST_RNG_BUF && n >= ROOST_RNG_BUF)
            return direct(rng, dst, n);
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
