// SDIM's original aggregation (ctr.SdimLinear), forward and backward, one request at a time.
//
// For every sample b of request r and signature group g, the sum of the inherent features of
// the request's valid behaviours whose bucket in group g equals the target's:
//
//     v[b, g, :] = sum_{j < n_r, code[item_j, g] == code[target_b, g]} Kall[item_j, :]
//     backward:  d_Kall[item_j, :] += sum over the same (b, g) of d_v[b, g, :]
//
// The torch path builds every group's bucket sums with an index_add over a (R x L, H) gather of
// K_h, sixteen times per chunk, forward and backward. Here each behaviour's row is read once
// and added only where a sample's target shares its bucket: about cnt * G / 2^tau of the
// (sample, group) pairs, each a run of H contiguous floats. The backward visits the same pairs
// in the same order, summing the matching gradient rows into a register-held row first.
// Called through ctypes by the torch ops in twin_study/models/native/ops.py.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"

namespace {

constexpr int64_t AHEAD = 8;  // prefetch distance, in behaviours

// The feature row and the bucket ids of an item a few behaviours ahead (random rows of
// tables too large for the core's caches: without this the loop waits on memory).
inline void prefetch_item(const float* rows, int64_t H, const int64_t* codes, int64_t G,
                          int64_t item) {
    const float* row = rows + item * H;
    for (int64_t c = 0; c < H; c += 16) __builtin_prefetch(row + c);
    const int64_t* code = codes + item * G;
    for (int64_t g = 0; g < G; g += 8) __builtin_prefetch(code + g);
}

// y[:m] += x[:m]
inline void add_row(float* y, const float* x, int64_t m) {
    int64_t c = 0;
    for (; c + 8 <= m; c += 8) store8(y + c, load8(y + c) + load8(x + c));
    for (; c < m; ++c) y[c] += x[c];
}

// Per request: for each (group, bucket), the request's samples whose target is in it, as a
// CSR list (start[g * nb + beta] .. start[g * nb + beta + 1] into members).
struct BucketLists {
    std::vector<int64_t> start, members;

    void build(const int64_t* codes, int64_t G, int64_t nb, const int64_t* target,
               const int64_t* samples, int64_t cnt) {
        start.assign(G * nb + 1, 0);
        for (int64_t c = 0; c < cnt; ++c)
            for (int64_t g = 0; g < G; ++g) ++start[g * nb + codes[target[samples[c]] * G + g] + 1];
        for (int64_t i = 0; i < G * nb; ++i) start[i + 1] += start[i];
        members.assign(start[G * nb], 0);
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        for (int64_t c = 0; c < cnt; ++c)
            for (int64_t g = 0; g < G; ++g)
                members[fill[g * nb + codes[target[samples[c]] * G + g]]++] = samples[c];
    }
};

bool bad_input(const int64_t* codes, int64_t V, int64_t G, int64_t nb, const int64_t* items,
               int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        if (items[j] < 0 || items[j] >= V) return true;
        for (int64_t g = 0; g < G; ++g) {
            const int64_t beta = codes[items[j] * G + g];
            if (beta < 0 || beta >= nb) return true;
        }
    }
    return false;
}

}  // namespace

extern "C" {

// Kall (V, H) float32; codes (V, G) int64 bucket ids in [0, nb); hist_item (R, L) int64;
// n_valid (R,); target (B,) item ids; order (B,) the samples grouped by request, counts (R,).
// Out: v (B, G, H), written whole. Returns 0; -1 when an item id or a bucket id is out of range.
int sdim_pool_forward(const float* Kall, int64_t V, int64_t H, const int64_t* codes, int64_t G,
                      int64_t nb, const int64_t* hist_item, int64_t R, int64_t L,
                      const int64_t* n_valid, const int64_t* target, int64_t B,
                      const int64_t* order, const int64_t* counts, float* v) {
    std::memset(v, 0, sizeof(float) * B * G * H);
    if (bad_input(codes, V, G, nb, target, B)) return -1;
    BucketLists lists;
    return each_request(R, L, n_valid, order, counts, [&](int64_t r, const int64_t* samples,
                                                          int64_t cnt, int64_t n) -> int {
        const int64_t* items = hist_item + r * L;
        if (bad_input(codes, V, G, nb, items, n)) return -1;
        lists.build(codes, G, nb, target, samples, cnt);
        for (int64_t j = 0; j < n; ++j) {
            if (j + AHEAD < n) prefetch_item(Kall, H, codes, G, items[j + AHEAD]);
            const float* row = Kall + items[j] * H;
            const int64_t* code = codes + items[j] * G;
            for (int64_t g = 0; g < G; ++g) {
                const int64_t cell = g * nb + code[g];
                for (int64_t m = lists.start[cell]; m < lists.start[cell + 1]; ++m)
                    add_row(v + (lists.members[m] * G + g) * H, row, H);
            }
        }
        return 0;
    });
}

// The backward: d_Kall (V, H) float32, added to; d_v (B, G, H); the other inputs as the
// forward. Returns 0; -1 when an item id or a bucket id is out of range (checked, as in the
// forward, before a row is read or written).
int sdim_pool_backward(float* d_Kall, int64_t V, int64_t H, const int64_t* codes, int64_t G,
                       int64_t nb, const int64_t* hist_item, int64_t R, int64_t L,
                       const int64_t* n_valid, const int64_t* target, int64_t B,
                       const int64_t* order, const int64_t* counts, const float* d_v) {
    if (bad_input(codes, V, G, nb, target, B)) return -1;
    BucketLists lists;
    std::vector<float> acc(H);
    return each_request(R, L, n_valid, order, counts, [&](int64_t r, const int64_t* samples,
                                                          int64_t cnt, int64_t n) -> int {
        const int64_t* items = hist_item + r * L;
        if (bad_input(codes, V, G, nb, items, n)) return -1;
        lists.build(codes, G, nb, target, samples, cnt);
        for (int64_t j = 0; j < n; ++j) {
            if (j + AHEAD < n) prefetch_item(d_Kall, H, codes, G, items[j + AHEAD]);
            const int64_t* code = codes + items[j] * G;
            std::fill(acc.begin(), acc.end(), 0.0f);
            bool any = false;
            for (int64_t g = 0; g < G; ++g) {
                const int64_t cell = g * nb + code[g];
                for (int64_t m = lists.start[cell]; m < lists.start[cell + 1]; ++m) {
                    add_row(acc.data(), d_v + (lists.members[m] * G + g) * H, H);
                    any = true;
                }
            }
            if (any) add_row(d_Kall + items[j] * H, acc.data(), H);
        }
        return 0;
    });
}

}  // extern "C"
