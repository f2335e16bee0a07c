// Concatenated embedding lookup, forward and backward, one pass over the rows.
//
// A behaviour's features K = [K_h, K_c] are P embedding lookups side by side (item id, the
// item table's features, one table per cross feature). With torch ops that is P index_selects
// and a concatenation forward -- every row written twice -- and, backward, a contiguous copy of
// each column slice of the gradient before its index_add. Here:
//
//     forward:   out[r, off_p : off_p + w_p]  = table_p[idx_p[r]]         for every part p
//     backward:  grad_p[idx_p[r]]            += d_out[r, off_p : off_p + w_p]
//
// each row of out / d_out touched once, in order. The backward adds the rows in the order
// r = 0, 1, ... as index_add_ on the CPU does, so the sums are the same.
// Called through ctypes by the torch ops in twin_study/models/native/ops.py.

#include <cstdint>
#include <cstring>

#include "common.h"

namespace {

// 0, or -(p + 1) for the first part p with an index outside its table's V[p] rows.
int check_indices(int64_t N, int64_t P, const int64_t* V, const int64_t* const* idx,
                  const int64_t* istride) {
    for (int64_t p = 0; p < P; ++p)
        for (int64_t r = 0; r < N; ++r) {
            const int64_t i = idx[p][r * istride[p]];
            if (i < 0 || i >= V[p]) return -static_cast<int>(p + 1);
        }
    return 0;
}

}  // namespace

extern "C" {

// N rows; part p: table tabs[p] (V[p], widths[p]) contiguous, index idx[p][r * istride[p]].
// out (N, sum of widths) contiguous. Returns 0, or -(p + 1) when part p's index is outside
// its table (checked before any row is read; the caller raises).
int rows_gather(int64_t N, int64_t P, const float* const* tabs, const int64_t* V,
                const int64_t* widths, const int64_t* const* idx, const int64_t* istride,
                float* out) {
    int64_t width = 0;
    for (int64_t p = 0; p < P; ++p) width += widths[p];
    const int rc = check_indices(N, P, V, idx, istride);  // first: no row read out of bounds
    if (rc != 0) return rc;
    for (int64_t r = 0; r < N; ++r) {
        float* o = out + r * width;
        for (int64_t p = 0; p < P; ++p) {
            const int64_t w = widths[p];
            std::memcpy(o, tabs[p] + idx[p][r * istride[p]] * w, sizeof(float) * w);
            o += w;
        }
    }
    return 0;
}

// grads[p] (V[p], widths[p]) contiguous, added to; d_out (N, *) with row stride ldo, its
// first sum-of-widths columns the parts' gradients. Returns 0, or -(p + 1) as rows_gather
// (checked before any row is written).
int rows_scatter_add(int64_t N, int64_t P, float* const* grads, const int64_t* V,
                     const int64_t* widths, const int64_t* const* idx, const int64_t* istride,
                     const float* d_out, int64_t ldo) {
    const int rc = check_indices(N, P, V, idx, istride);
    if (rc != 0) return rc;
    for (int64_t r = 0; r < N; ++r) {
        const float* g = d_out + r * ldo;
        for (int64_t p = 0; p < P; ++p) {
            const int64_t w = widths[p];
            float* dst = grads[p] + idx[p][r * istride[p]] * w;
            int64_t c = 0;
            for (; c + 8 <= w; c += 8) store8(dst + c, load8(dst + c) + load8(g + c));
            for (; c < w; ++c) dst[c] += g[c];
            g += w;
        }
    }
    return 0;
}

}  // extern "C"
