// The ESU's masked softmax attention pooling (attention._PooledAttention), forward and
// backward, one sample at a time and one pass over its finalists' features per product.
//
// Per sample (n finalists, heads a, K the (n, Hv) features, keys = K's first `width` columns):
//     alpha[i, a] = bias[i, a] + K[i, :width] . q[a]        w = softmax over the valid i
//     pooled[a]   = sum_i w[i, a] K[i]
// backward, from d_pooled (heads, Hv):
//     d_w[i, a]   = K[i] . d_pooled[a]                      d_alpha = w * (d_w - sum_i w d_w)
//     d_q[a]      = sum_i d_alpha[i, a] K[i, :width]
//     d_K[i]      = sum_a w[i, a] d_pooled[a] + d_alpha[i, a] [q[a], 0]
// torch computes the same with batched products of tiny matrices (B x 100 x 168 by 4 or 8
// columns), which run far below the CPU's speed; here each row of K is read from the cache
// once per pass and the columns are vector lanes. A sample without a valid finalist gets zero
// weights (a softmax over nothing). Called through ctypes by the torch ops in
// twin_study/models/native/ops.py.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common.h"

namespace {

inline float hsum(v8f v) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

inline float dot(const float* a, const float* b, int64_t m) {
    v8f acc0 = {0, 0, 0, 0, 0, 0, 0, 0}, acc1 = acc0;
    int64_t c = 0;
    for (; c + 16 <= m; c += 16) {
        acc0 += load8(a + c) * load8(b + c);
        acc1 += load8(a + c + 8) * load8(b + c + 8);
    }
    for (; c + 8 <= m; c += 8) acc0 += load8(a + c) * load8(b + c);
    float s = hsum(acc0 + acc1);
    for (; c < m; ++c) s += a[c] * b[c];
    return s;
}

// y[:m] += s * x[:m]
inline void axpy(float* y, float s, const float* x, int64_t m) {
    int64_t c = 0;
    for (; c + 8 <= m; c += 8) store8(y + c, load8(y + c) + s * load8(x + c));
    for (; c < m; ++c) y[c] += s * x[c];
}

// The backward of one sample (see esu_backward); HEADS > 0 fixes the head count at compile time
// (TWIN's 4) so that the per-head weights stay in registers, 0 reads it at run time.
template <int HEADS>
void backward_sample(const float* Kb, int64_t n, int64_t ldk, int64_t Hv, int64_t width,
                     const float* qb, int64_t heads_rt, const float* wb, const float* gp,
                     float* dKb, float* dq, float* da, float* dots, float* wi, float* g) {
    const int64_t heads = HEADS > 0 ? HEADS : heads_rt;
    std::memset(dq, 0, sizeof(float) * heads * width);
    for (int64_t a = 0; a < heads; ++a) dots[a] = 0.0f;
    for (int64_t i = 0; i < n; ++i) {  // d_w, kept in d_alpha for now
        const float* row = Kb + i * ldk;
        for (int64_t a = 0; a < heads; ++a) {
            const float dw = dot(row, gp + a * Hv, Hv);
            da[i * heads + a] = dw;
            dots[a] += wb[i * heads + a] * dw;
        }
    }
    const int64_t full = width / 8 * 8;  // key columns in whole blocks of 8
    for (int64_t i = 0; i < n; ++i) {
        const float* row = Kb + i * ldk;
        float* out = dKb + i * Hv;
        for (int64_t a = 0; a < heads; ++a) {
            wi[a] = wb[i * heads + a];
            g[a] = wi[a] * (da[i * heads + a] - dots[a]);  // softmax backward
            da[i * heads + a] = g[a];
        }
        // d_K's row in registers, one store per 8 columns (not one read-modify-write of
        // the row per head and term): key columns get both terms, the rest only the first.
        int64_t c = 0;
        for (; c < full; c += 8) {
            v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t a = 0; a < heads; ++a)
            {
                acc += wi[a] * load8(gp + a * Hv + c);
                acc += g[a] * load8(qb + a * width + c);
            }
            store8(out + c, acc);
        }
        for (; c < width; ++c) {  // a block that straddles the keys' end
            float acc = 0.0f;
            for (int64_t a = 0; a < heads; ++a) {
                acc += wi[a] * gp[a * Hv + c];
                acc += g[a] * qb[a * width + c];
            }
            out[c] = acc;
        }
        for (; c + 8 <= Hv; c += 8) {
            v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t a = 0; a < heads; ++a) acc += wi[a] * load8(gp + a * Hv + c);
            store8(out + c, acc);
        }
        for (; c < Hv; ++c) {
            float acc = 0.0f;
            for (int64_t a = 0; a < heads; ++a) acc += wi[a] * gp[a * Hv + c];
            out[c] = acc;
        }
        for (int64_t a = 0; a < heads; ++a)
            if (g[a] != 0.0f) axpy(dq + a * width, g[a], row, width);
    }
}

}  // namespace

extern "C" {

// K (B, n, ldk) float32, of which the first Hv columns are the features (keys: the first
// width); q (B, heads, width); bias (B, n, heads); valid (B, n) uint8.
// Out: w (B, n, heads) and pooled (B, heads, Hv).
void esu_forward(const float* K, int64_t B, int64_t n, int64_t ldk, int64_t Hv, int64_t width,
                 const float* q, int64_t heads, const float* bias, const uint8_t* valid,
                 float* w, float* pooled) {
    const float NEG_INF = -std::numeric_limits<float>::infinity();
    std::vector<float> mx(heads), sum(heads);
    for (int64_t b = 0; b < B; ++b) {
        const float* Kb = K + b * n * ldk;
        const float* qb = q + b * heads * width;
        const uint8_t* vb = valid + b * n;
        float* wb = w + b * n * heads;
        float* pb = pooled + b * heads * Hv;
        std::memset(pb, 0, sizeof(float) * heads * Hv);
        bool any = false;
        for (int64_t i = 0; i < n; ++i) any |= vb[i] != 0;
        if (!any) {
            std::memset(wb, 0, sizeof(float) * n * heads);
            continue;
        }
        for (int64_t a = 0; a < heads; ++a) mx[a] = NEG_INF;
        for (int64_t i = 0; i < n; ++i) {
            const float* row = Kb + i * ldk;
            for (int64_t a = 0; a < heads; ++a) {
                float s = NEG_INF;
                if (vb[i]) {
                    s = dot(row, qb + a * width, width) + bias[(b * n + i) * heads + a];
                    mx[a] = std::max(mx[a], s);
                }
                wb[i * heads + a] = s;
            }
        }
        for (int64_t a = 0; a < heads; ++a) sum[a] = 0.0f;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t a = 0; a < heads; ++a) {
                const float e = vb[i] ? std::exp(wb[i * heads + a] - mx[a]) : 0.0f;
                wb[i * heads + a] = e;
                sum[a] += e;
            }
        for (int64_t i = 0; i < n; ++i) {
            const float* row = Kb + i * ldk;
            for (int64_t a = 0; a < heads; ++a) {
                const float wi = wb[i * heads + a] / sum[a];
                wb[i * heads + a] = wi;
                if (wi != 0.0f) axpy(pb + a * Hv, wi, row, Hv);
            }
        }
    }
}

// The backward of esu_forward from d_pooled (B, heads, Hv): d_K (B, n, Hv) (written whole),
// d_q (B, heads, width), d_alpha (B, n, heads) (the gradient of the bias).
void esu_backward(const float* K, int64_t B, int64_t n, int64_t ldk, int64_t Hv, int64_t width,
                  const float* q, int64_t heads, const float* w, const float* d_pooled,
                  float* d_K, float* d_q, float* d_alpha) {
    std::vector<float> dots(heads), wi(heads), g(heads);
    for (int64_t b = 0; b < B; ++b) {
        const float* Kb = K + b * n * ldk;
        const float* qb = q + b * heads * width;
        const float* wb = w + b * n * heads;
        const float* gp = d_pooled + b * heads * Hv;
        float* dKb = d_K + b * n * Hv;
        float* da = d_alpha + b * n * heads;
        float* dq = d_q + b * heads * width;
        if (heads == 4)
            backward_sample<4>(Kb, n, ldk, Hv, width, qb, heads, wb, gp, dKb, dq, da,
                               dots.data(), wi.data(), g.data());
        else
            backward_sample<0>(Kb, n, ldk, Hv, width, qb, heads, wb, gp, dKb, dq, da,
                               dots.data(), wi.data(), g.data());
    }
}

}  // extern "C"
