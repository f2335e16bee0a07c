// Fused GSU selection for table-keyed GSUs (TWIN's CP-GSU, SIM Soft, ETA, SDIM), one thread.
//
// For every request r and each of its candidates c, head h:
//
//     score[c, h, j] = q[c, h] . table[item[r, j], h]  +  bias[h, code(r, j)]  +  tiebreak * rec[j]
//
// over the request's n valid slots j (most recent first, rec[j] = -j / (L + 1)), and keep the
// k best slots of every (c, h) row, best first. This is what topk.select_per_request does with
// torch ops (gather the n key rows, one bmm, add the bias, blocked top-k), fused into one pass:
// a key row is read once for all candidates and heads of the request, 8 candidates are scored
// per vector instruction, and the block maxima kept on the way make the top-k exact while
// ranking only the blocks that can hold it (see top_of_row). Ties: the more recent slot wins
// (torch.topk leaves tie order undefined; the tests compare selections up to exact ties).
//
// Built on first use by twin_study/models/native.py (g++ -O3 -march=native) and called through
// ctypes with raw pointers to contiguous CPU tensors.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

namespace {

constexpr int64_t AHEAD = 16;  // prefetch distance, in behaviours
constexpr int LANES = 8;  // candidates scored together: one 256-bit vector of floats
typedef float v8f __attribute__((vector_size(32)));

struct Entry {
    float s;
    int64_t j;
};

// a ranks before b: higher score; equal scores: the more recent (smaller) slot.
inline bool better(const Entry& a, const Entry& b) { return a.s > b.s || (a.s == b.s && a.j < b.j); }

// The k best of one row's n scores, best first, given the
// maxima of its blocks of W consecutive slots. Every top-k score lies in a block whose maximum
// is at least tau, the k-th largest block maximum (at least k scores reach tau, so the k-th
// best does), so only the slots of those blocks that reach tau are ranked.
// (score, slot) as one integer whose ascending order is the ranking: higher score first, then
// the smaller slot. Sorting these is several times faster than sorting pairs with a comparator.
inline uint64_t rank_key(float s, int64_t j) {
    uint32_t u;
    std::memcpy(&u, &s, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // now ascending as unsigned = as floats
    return (static_cast<uint64_t>(~u) << 32) | static_cast<uint32_t>(j);
}

inline Entry from_key(uint64_t key) {
    uint32_t u = ~static_cast<uint32_t>(key >> 32);
    u = (u & 0x80000000u) ? (u & 0x7fffffffu) : ~u;
    float s;
    std::memcpy(&s, &u, sizeof s);
    return {s, static_cast<int64_t>(key & 0xffffffffu)};
}

inline int64_t top_of_row(const float* sc, const float* bmax, int64_t n, int64_t W, int64_t k,
                          std::vector<float>& tmp, std::vector<uint64_t>& cand, Entry* out) {
    const int64_t nb = (n + W - 1) / W;
    float tau = -std::numeric_limits<float>::infinity();
    if (nb > k) {
        tmp.resize(nb);
        std::copy(bmax, bmax + nb, tmp.begin());
        std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<float>());
        tau = tmp[k - 1];
    }
    cand.clear();
    for (int64_t q = 0; q < nb; ++q) {
        if (bmax[q] < tau) continue;
        const int64_t hi = std::min(n, (q + 1) * W);
        for (int64_t j = q * W; j < hi; ++j) {
            const float v = sc[j];
            if (v >= tau) cand.push_back(rank_key(v, j));
        }
    }
    if (static_cast<int64_t>(cand.size()) > k)
        std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end());
    const int64_t m = std::min<int64_t>(k, cand.size());
    std::sort(cand.begin(), cand.begin() + m);
    for (int64_t i = 0; i < m; ++i) out[i] = from_key(cand[i]);
    return m;
}

}  // namespace

extern "C" {

// table (V, heads * d) float32; hist_item (R, L) int64; n_valid (R,) int64; query (B, heads, d)
// float32; order (B,) the samples grouped by request (request r owns order[start_r ..
// start_r + counts[r])); counts (R,) int64. bias (heads, n_codes) float32 or null; codes
// (R, L, J) int64 and strides (J,) int64: behaviour (r, j) reads bias column
// sum_t codes[r, j, t] * strides[t]. tiebreak: weight of rec[j] = -j / (L + 1).
// Out: out_idx (B, heads, k) int64 and out_val (B, heads, k) float32, best first; a request
// with n < k valid slots fills positions n .. k-1 with the padding slots n .. k-1 at -inf.
// Returns 0; -1 when an item id is outside the table, -2 when a bias column is.
int gsu_select(const float* table, int64_t V, int64_t heads, int64_t d,
               const int64_t* hist_item, int64_t R, int64_t L, const int64_t* n_valid,
               const float* query, const int64_t* order, const int64_t* counts,
               const float* bias, int64_t n_codes, const int64_t* codes, int64_t J,
               const int64_t* strides, float tiebreak, int64_t k, int64_t* out_idx,
               float* out_val) {
    const int64_t hd = heads * d;
    const float NEG_INF = -std::numeric_limits<float>::infinity();
    std::vector<v8f> qT;             // (heads, blocks, d) lanes of queries, one per candidate
    std::vector<float> sc;           // (heads * blocks * LANES, n) each row's scores
    std::vector<float> bmax;         // (heads * blocks * LANES, n / W) their block maxima
    std::vector<v8f> run;            // (heads * blocks) running maxima of the current block
    std::vector<float> tmp;
    std::vector<uint64_t> cand;
    std::vector<Entry> best;
    std::vector<int64_t> cols;       // (n,) bias column of each behaviour
    int64_t start = 0;
    for (int64_t r = 0; r < R; ++r) {
        const int64_t cnt = counts[r];
        const int64_t* samples = order + start;
        start += cnt;
        if (cnt == 0) continue;
        const int64_t n = std::min<int64_t>(n_valid[r], L);
        const int64_t kk = std::min(k, n);
        // Padding first: slots kk .. k-1 (only when n < k), and the whole row when n = 0.
        for (int64_t c = 0; c < cnt; ++c)
            for (int64_t h = 0; h < heads; ++h) {
                int64_t* oi = out_idx + (samples[c] * heads + h) * k;
                float* ov = out_val + (samples[c] * heads + h) * k;
                for (int64_t i = kk; i < k; ++i) {
                    oi[i] = i;
                    ov[i] = NEG_INF;
                }
            }
        if (n == 0) continue;
        const int64_t blocks = (cnt + LANES - 1) / LANES;
        const v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
        qT.assign(heads * blocks * d, zero);
        for (int64_t c = 0; c < cnt; ++c) {
            const float* q = query + samples[c] * hd;
            const int64_t b = c / LANES, lane = c % LANES;
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t e = 0; e < d; ++e) qT[(h * blocks + b) * d + e][lane] = q[h * d + e];
        }
        const int64_t HB = heads * blocks;
        // Block width: about 4 sqrt(n / k) slots balances ranking the block maxima against
        // scanning the chosen blocks; at least 8.
        const int64_t W = std::max<int64_t>(8, static_cast<int64_t>(4 * std::sqrt(double(n) / kk)));
        const int64_t nb = (n + W - 1) / W;
        sc.resize(HB * LANES * n);
        bmax.resize(HB * LANES * nb);
        run.assign(HB, zero + NEG_INF);
        const int lanes_last = static_cast<int>(cnt - (blocks - 1) * LANES);  // used lanes
        const int64_t* items = hist_item + r * L;
        const int64_t* code = codes ? codes + r * L * J : nullptr;
        const float denom = static_cast<float>(L + 1);
        // Bias columns first (a sequential pass), so that the loop below can prefetch them.
        if (bias) {
            cols.resize(n);
            for (int64_t j = 0; j < n; ++j) {
                int64_t col = 0;
                for (int64_t t = 0; t < J; ++t) col += code[j * J + t] * strides[t];
                if (col < 0 || col >= n_codes) return -2;
                cols[j] = col;
            }
        }
        for (int64_t j = 0; j < n; ++j) {
            const int64_t item = items[j];
            if (item < 0 || item >= V) return -1;
            if (j + AHEAD < n) {  // the key row and bias entries AHEAD behaviours on
                const float* next = table + items[j + AHEAD] * hd;
                for (int64_t off = 0; off < hd; off += 16) __builtin_prefetch(next + off);
                if (bias)
                    for (int64_t h = 0; h < heads; ++h)
                        __builtin_prefetch(bias + h * n_codes + cols[j + AHEAD]);
            }
            const float* key = table + item * hd;
            const int64_t col = bias ? cols[j] : 0;
            // As torch computes it: (-j / (L + 1)) * tiebreak, in float32.
            const float rec = tiebreak != 0.0f ? (-static_cast<float>(j) / denom) * tiebreak : 0.0f;
            for (int64_t h = 0; h < heads; ++h) {
                const float* kh = key + h * d;
                const float add = bias ? bias[h * n_codes + col] : 0.0f;
                for (int64_t b = 0; b < blocks; ++b) {
                    const v8f* qb = qT.data() + (h * blocks + b) * d;
                    // 8 candidates at once; four partial sums, so that the adds do not wait
                    // on each other (one chain of d dependent adds was the bottleneck).
                    v8f a0 = zero, a1 = zero, a2 = zero, a3 = zero;
                    int64_t e = 0;
                    for (; e + 4 <= d; e += 4) {
                        a0 += kh[e] * qb[e];
                        a1 += kh[e + 1] * qb[e + 1];
                        a2 += kh[e + 2] * qb[e + 2];
                        a3 += kh[e + 3] * qb[e + 3];
                    }
                    for (; e < d; ++e) a0 += kh[e] * qb[e];
                    v8f acc = (a0 + a1) + (a2 + a3);
                    acc += add;  // the order torch adds them in
                    if (tiebreak != 0.0f) acc += rec;
                    const int64_t hb = h * blocks + b;
                    const int used = b + 1 < blocks ? LANES : lanes_last;
                    float* out = sc.data() + hb * LANES * n + j;  // row (hb, lane) at lane * n
                    for (int l = 0; l < used; ++l) out[l * n] = acc[l];
                    v8f& m = run[hb];
                    m = acc > m ? acc : m;
                    if ((j + 1) % W == 0 || j + 1 == n) {  // the block ends: keep its maxima
                        float* bm = bmax.data() + hb * LANES * nb + j / W;
                        for (int l = 0; l < used; ++l) bm[l * nb] = m[l];
                        m = zero + NEG_INF;
                    }
                }
            }
        }
        for (int64_t c = 0; c < cnt; ++c) {
            const int64_t b = c / LANES, lane = c % LANES;
            for (int64_t h = 0; h < heads; ++h) {
                const int64_t row = (h * blocks + b) * LANES + lane;
                best.resize(kk);
                const int64_t m = top_of_row(sc.data() + row * n, bmax.data() + row * nb, n, W,
                                             kk, tmp, cand, best.data());
                int64_t* oi = out_idx + (samples[c] * heads + h) * k;
                float* ov = out_val + (samples[c] * heads + h) * k;
                for (int64_t i = 0; i < m; ++i) {
                    oi[i] = best[i].j;
                    ov[i] = best[i].s;
                }
            }
        }
    }
    return 0;
}

}  // extern "C"
