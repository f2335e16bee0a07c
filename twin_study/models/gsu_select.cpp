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
// ranking only the blocks that can hold it (see select_lanes). Ties: the more recent slot wins
// (torch.topk leaves tie order undefined; the tests compare selections up to exact ties).
//
// Built on first use by twin_study/models/native/library.py (g++ -O3, a fixed x86-64 level) and
// called through ctypes by the torch ops in native/ops.py, with pointers to checked CPU tensors.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "common.h"

namespace {

constexpr int64_t AHEAD = 16;  // prefetch distance, in behaviours
constexpr int LANES = 8;  // candidates scored together: one 256-bit vector of floats

struct Entry {
    float s;
    int64_t j;
};

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

inline bool items_bad(const int64_t* items, int64_t n, int64_t V) {
    for (int64_t j = 0; j < n; ++j)
        if (items[j] < 0 || items[j] >= V) return true;
    return false;
}

// Scores of one request's n slots for its candidates (8 per vector) and heads, into
// sc (n, HB) and the maxima of every W consecutive slots into bmax (n / W, HB), HB = heads *
// blocks of 8 candidates. Recency is a template flag: no branch in the loop.
template <bool RECENCY>
void score_slots(const float* table, int64_t hd, int64_t heads, int64_t d, int64_t blocks,
                 const int64_t* items, int64_t n, int64_t V, const float* bias, int64_t n_codes,
                 const int64_t* cols, float tiebreak, float denom, const v8f* qT, int64_t W,
                 v8f* sc, v8f* bmax) {
    const int64_t HB = heads * blocks;
    const v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j = 0; j < n; ++j) {
        const int64_t item = std::min<int64_t>(std::max<int64_t>(items[j], 0), V - 1);  // checked after
        if (j + AHEAD < n) {  // the key row and bias entries AHEAD behaviours on
            const int64_t ahead = std::min<int64_t>(std::max<int64_t>(items[j + AHEAD], 0), V - 1);
            const float* next = table + ahead * hd;
            for (int64_t off = 0; off < hd; off += 16) __builtin_prefetch(next + off);
            if (bias)
                for (int64_t h = 0; h < heads; ++h)
                    __builtin_prefetch(bias + h * n_codes + cols[j + AHEAD]);
        }
        const float* key = table + item * hd;
        // As torch computes it: (-j / (L + 1)) * tiebreak, in float32.
        const float rec = RECENCY ? (-static_cast<float>(j) / denom) * tiebreak : 0.0f;
        v8f* out = sc + j * HB;
        v8f* bm = bmax + (j / W) * HB;
        for (int64_t h = 0; h < heads; ++h) {
            const float* kh = key + h * d;
            const float add = bias ? bias[h * n_codes + cols[j]] : 0.0f;
            for (int64_t b = 0; b < blocks; ++b) {
                const v8f* qb = qT + (h * blocks + b) * d;
                // Four partial sums, so that the adds do not wait on each other (one chain of
                // d dependent adds was the bottleneck).
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
                if (RECENCY) acc += rec;
                const int64_t hb = h * blocks + b;
                out[hb] = acc;
                bm[hb] = acc > bm[hb] ? acc : bm[hb];
            }
        }
    }
}

// score_slots for d = D known at compile time (TWIN: 16 per head), head by head: the D query
// vectors of a (head, block) stay in registers for the whole pass over the n slots, so the
// inner loop is D broadcasts of the key and D fused multiply-adds. Each pass reads one head's
// D floats of every key row (one cache line for D = 16): the same lines as a single pass.
template <int D, bool RECENCY>
void score_slots_fixed(const float* table, int64_t hd, int64_t heads, int64_t blocks,
                       const int64_t* items, int64_t n, int64_t V, const float* bias,
                       int64_t n_codes, const int64_t* cols, float tiebreak, float denom,
                       const v8f* qT, int64_t W, v8f* sc, v8f* bmax) {
    const int64_t HB = heads * blocks;
    const v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t b = 0; b < blocks; ++b) {
            const int64_t hb = h * blocks + b;
            v8f q[D];
            for (int e = 0; e < D; ++e) q[e] = qT[hb * D + e];
            const float* bh = bias ? bias + h * n_codes : nullptr;
            for (int64_t j = 0; j < n; ++j) {
                if (j + AHEAD < n) {
                    const int64_t ahead = std::min<int64_t>(std::max<int64_t>(items[j + AHEAD], 0), V - 1);
                    __builtin_prefetch(table + ahead * hd + h * D);
                    if (bh) __builtin_prefetch(bh + cols[j + AHEAD]);
                }
                const int64_t item = std::min<int64_t>(std::max<int64_t>(items[j], 0), V - 1);
                const float* kh = table + item * hd + h * D;
                v8f a0 = zero, a1 = zero, a2 = zero, a3 = zero;
                for (int e = 0; e + 4 <= D; e += 4) {
                    a0 += kh[e] * q[e];
                    a1 += kh[e + 1] * q[e + 1];
                    a2 += kh[e + 2] * q[e + 2];
                    a3 += kh[e + 3] * q[e + 3];
                }
                v8f acc = (a0 + a1) + (a2 + a3);
                if (bh) acc += bh[cols[j]];  // the order torch adds them in
                if (RECENCY) acc += (-static_cast<float>(j) / denom) * tiebreak;
                sc[j * HB + hb] = acc;
                v8f& m = bmax[(j / W) * HB + hb];
                m = acc > m ? acc : m;
            }
        }
}

// The k best slots of each of the ``used`` lanes of one (head, block) column, best first, as
// rank keys in cand[lane]. Every top-k score of a lane lies in a block of W slots whose
// maximum is at least tau, the lane's k-th largest block maximum (at least k scores reach tau,
// so the k-th best does): only those blocks are read, all lanes at once.
void select_lanes(const v8f* sc, const v8f* bmax, int64_t HB, int64_t n, int64_t W, int64_t k,
                  int used, std::vector<float>& tmp, std::vector<uint64_t>* cand) {
    const int64_t nb = (n + W - 1) / W;
    v8f tau;
    for (int l = 0; l < LANES; ++l) tau[l] = std::numeric_limits<float>::infinity();
    for (int l = 0; l < used; ++l) {
        tau[l] = -std::numeric_limits<float>::infinity();
        if (nb > k) {
            tmp.resize(nb);
            for (int64_t q = 0; q < nb; ++q) tmp[q] = bmax[q * HB][l];
            std::nth_element(tmp.begin(), tmp.begin() + (k - 1), tmp.end(), std::greater<float>());
            tau[l] = tmp[k - 1];
        }
        cand[l].clear();
    }
    for (int64_t q = 0; q < nb; ++q) {
        const v8f m = bmax[q * HB];
        bool any = false;
        for (int l = 0; l < used; ++l) any |= m[l] >= tau[l];
        if (!any) continue;
        const int64_t hi = std::min(n, (q + 1) * W);
        for (int64_t j = q * W; j < hi; ++j) {
            const v8f v = sc[j * HB];
            for (int l = 0; l < used; ++l)
                if (v[l] >= tau[l]) cand[l].push_back(rank_key(v[l], j));
        }
    }
    for (int l = 0; l < used; ++l) {
        std::vector<uint64_t>& c = cand[l];
        if (static_cast<int64_t>(c.size()) > k) {
            std::nth_element(c.begin(), c.begin() + (k - 1), c.end());
            c.resize(k);
        }
        std::sort(c.begin(), c.end());
    }
}


// The loop every table-keyed selection shares: per request, pad short histories, score its n
// valid slots for all its candidates (``score`` fills sc (n, heads * blocks) and the block
// maxima; nonzero = an error code), check the item ids, and keep each (candidate, head) row's
// k best. Arguments and outputs as gsu_select below.
template <class Score>
int select_each_request(int64_t heads, int64_t V, const int64_t* hist_item, int64_t R,
                        int64_t L, const int64_t* n_valid, const int64_t* order,
                        const int64_t* counts, int64_t k, int64_t* out_idx, float* out_val,
                        Score score) {
    const float NEG_INF = -std::numeric_limits<float>::infinity();
    std::vector<v8f> sc;    // (n, heads * blocks) the scores, 8 candidates per vector
    std::vector<v8f> bmax;  // (n / W, heads * blocks) their block maxima
    std::vector<float> tmp;
    std::vector<uint64_t> cand[LANES];
    return each_request(R, L, n_valid, order, counts, [&](int64_t r, const int64_t* samples,
                                                          int64_t cnt, int64_t n) -> int {
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
        if (n == 0) return 0;
        const int64_t blocks = (cnt + LANES - 1) / LANES;
        const v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
        const int64_t HB = heads * blocks;
        // Block width: about 4 sqrt(n / k) slots balances ranking the block maxima against
        // scanning the chosen blocks; at least 8.
        const int64_t W = std::max<int64_t>(8, static_cast<int64_t>(4 * std::sqrt(double(n) / kk)));
        const int64_t nb = (n + W - 1) / W;
        sc.resize(n * HB);
        bmax.assign(nb * HB, zero + NEG_INF);
        const int64_t* items = hist_item + r * L;
        const int rc = score(r, samples, cnt, blocks, items, n, W, sc.data(), bmax.data());
        if (rc != 0) return rc;
        if (items_bad(items, n, V)) return -1;
        for (int64_t h = 0; h < heads; ++h)
            for (int64_t b = 0; b < blocks; ++b) {
                const int used = static_cast<int>(std::min<int64_t>(LANES, cnt - b * LANES));
                select_lanes(sc.data() + h * blocks + b, bmax.data() + h * blocks + b, HB, n, W,
                             kk, used, tmp, cand);
                for (int l = 0; l < used; ++l) {
                    const int64_t sample = samples[b * LANES + l];
                    int64_t* oi = out_idx + (sample * heads + h) * k;
                    float* ov = out_val + (sample * heads + h) * k;
                    for (size_t i = 0; i < cand[l].size(); ++i) {
                        const Entry e = from_key(cand[l][i]);
                        oi[i] = e.j;
                        ov[i] = e.s;
                    }
                }
            }
        return 0;
    });
}

// SDIM's scores: the number of signature groups whose bucket id equals the candidate's, plus
// the recency tiebreak. codes (V, G16) uint8 bucket ids, G16 a multiple of 16 (the table pads
// with one value, the queries with another, so padding never collides); qc (8 * blocks, G16)
// the request's candidates' ids (lanes beyond cnt: anything). One 16-byte compare and a
// popcount per (behaviour, candidate, 16 groups) instead of a 2^tau-wide one-hot product.
void score_codes(const uint8_t* codes, int64_t G16, int64_t blocks, const int64_t* items,
                 int64_t n, int64_t V, const uint8_t* qc, float tiebreak, float denom, int64_t W,
                 v8f* sc, v8f* bmax) {
    typedef uint8_t v16u __attribute__((vector_size(16)));
    typedef uint64_t v2u __attribute__((vector_size(16)));
    for (int64_t j = 0; j < n; ++j) {
        if (j + AHEAD < n)
            __builtin_prefetch(codes + std::min<int64_t>(std::max<int64_t>(items[j + AHEAD], 0), V - 1) * G16);
        const uint8_t* row = codes + std::min<int64_t>(std::max<int64_t>(items[j], 0), V - 1) * G16;
        const float rec = (-static_cast<float>(j) / denom) * tiebreak;
        for (int64_t b = 0; b < blocks; ++b) {
            v8f acc;
            for (int l = 0; l < LANES; ++l) {
                const uint8_t* q = qc + (b * LANES + l) * G16;
                int hits = 0;
                for (int64_t g = 0; g < G16; g += 16) {
                    v16u x, y;
                    std::memcpy(&x, row + g, 16);
                    std::memcpy(&y, q + g, 16);
                    const v2u eq = reinterpret_cast<v2u>(x == y);  // 0xff per equal byte
                    hits += __builtin_popcountll(eq[0]) + __builtin_popcountll(eq[1]);
                }
                acc[l] = static_cast<float>(hits / 8);
            }
            acc += 0.0f;  // the (absent) bias, in the order the float kernel adds it
            acc += rec;
            sc[j * blocks + b] = acc;
            v8f& m = bmax[(j / W) * blocks + b];
            m = acc > m ? acc : m;
        }
    }
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
    std::vector<v8f> qT;        // (heads, blocks, d) lanes of queries, one per candidate
    std::vector<int64_t> cols;  // (n,) bias column of each behaviour
    const float denom = static_cast<float>(L + 1);
    auto score = [&](int64_t r, const int64_t* samples, int64_t cnt, int64_t blocks,
                     const int64_t* items, int64_t n, int64_t W, v8f* sc, v8f* bmax) -> int {
        const v8f zero = {0, 0, 0, 0, 0, 0, 0, 0};
        qT.assign(heads * blocks * d, zero);
        for (int64_t c = 0; c < cnt; ++c) {
            const float* q = query + samples[c] * hd;
            const int64_t b = c / LANES, lane = c % LANES;
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t e = 0; e < d; ++e) qT[(h * blocks + b) * d + e][lane] = q[h * d + e];
        }
        // Bias columns first (a sequential pass), so that the scoring loop can prefetch them.
        if (bias) {
            const int64_t* code = codes + r * L * J;
            cols.resize(n);
            for (int64_t j = 0; j < n; ++j) {
                int64_t col = 0;
                for (int64_t t = 0; t < J; ++t) col += code[j * J + t] * strides[t];
                if (col < 0 || col >= n_codes) return -2;
                cols[j] = col;
            }
        }
        if (d == 16 && tiebreak == 0.0f)
            score_slots_fixed<16, false>(table, hd, heads, blocks, items, n, V, bias, n_codes,
                                         cols.data(), tiebreak, denom, qT.data(), W, sc, bmax);
        else if (tiebreak != 0.0f)
            score_slots<true>(table, hd, heads, d, blocks, items, n, V, bias, n_codes,
                              cols.data(), tiebreak, denom, qT.data(), W, sc, bmax);
        else
            score_slots<false>(table, hd, heads, d, blocks, items, n, V, bias, n_codes,
                               cols.data(), tiebreak, denom, qT.data(), W, sc, bmax);
        return 0;
    };
    return select_each_request(heads, V, hist_item, R, L, n_valid, order, counts, k, out_idx,
                               out_val, score);
}

// gsu_select for SDIM's collision counts (one head): codes (V, G16) uint8 bucket ids per
// item, query (B, G16) uint8 the targets' ids, tiebreak the recency weight; the rest and the
// outputs as gsu_select (heads = 1). The scores equal gsu_select's over the one-hot table.
int gsu_select_codes(const uint8_t* codes, int64_t V, int64_t G16, const int64_t* hist_item,
                     int64_t R, int64_t L, const int64_t* n_valid, const uint8_t* query,
                     const int64_t* order, const int64_t* counts, float tiebreak, int64_t k,
                     int64_t* out_idx, float* out_val) {
    std::vector<uint8_t> qc;  // (8 * blocks, G16) the request's candidates' ids
    const float denom = static_cast<float>(L + 1);
    auto score = [&](int64_t, const int64_t* samples, int64_t cnt, int64_t blocks,
                     const int64_t* items, int64_t n, int64_t W, v8f* sc, v8f* bmax) -> int {
        qc.assign(blocks * LANES * G16, 0);
        for (int64_t c = 0; c < cnt; ++c)
            std::memcpy(qc.data() + c * G16, query + samples[c] * G16, G16);
        score_codes(codes, G16, blocks, items, n, V, qc.data(), tiebreak, denom, W, sc, bmax);
        return 0;
    };
    return select_each_request(1, V, hist_item, R, L, n_valid, order, counts, k, out_idx,
                               out_val, score);
}

// The paper's merge of per-head rankings into one set of k unique behaviours (as
// topk.merge_heads): walk rank-major -- rank 0 of head 0, 1, ..., rank 1 of head 0, ... --
// keeping a slot the first time it appears. top (B, heads, k) slots in [0, L), each head's
// list best first and duplicate-free; out (B, k). Returns 0, -1 for a slot outside [0, L), or
// -2 when a row yields fewer than k unique slots (a head's list repeats one; out unfilled).
int merge_heads(const int64_t* top, int64_t B, int64_t heads, int64_t k, int64_t L,
                int64_t* out) {
    std::vector<uint8_t> seen(L, 0);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t* t = top + b * heads * k;
        int64_t* o = out + b * k;
        int64_t m = 0;
        for (int64_t r = 0; r < k && m < k; ++r)
            for (int64_t h = 0; h < heads && m < k; ++h) {
                const int64_t slot = t[h * k + r];
                if (slot < 0 || slot >= L) return -1;
                if (!seen[slot]) {
                    seen[slot] = 1;
                    o[m++] = slot;
                }
            }
        for (int64_t i = 0; i < m; ++i) seen[o[i]] = 0;
        if (m < k) return -2;
    }
    return 0;
}

}  // extern "C"
