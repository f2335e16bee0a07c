// Shared by the native kernels: 8 floats as one vector (GCC / Clang vector extension; built for
// x86-64-v3 the compiler maps it to one 256-bit register, for the x86-64 baseline to two
// 128-bit ones, with the same float operations per lane), unaligned loads and
// stores through memcpy (no aliasing or alignment assumptions), and the walk over a batch's
// requests.
#pragma once

#include <cstdint>
#include <cstring>

typedef float v8f __attribute__((vector_size(32)));

inline v8f load8(const float* p) {
    v8f v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }

// The samples of each request: order (B,) holds them grouped by request, counts (R,) how many
// each request has. Calls fn(r, samples, cnt, n) for every request with samples, n = its valid
// behaviours (n_valid[r], at most L); a nonzero return stops the walk and is returned.
template <class F>
int each_request(int64_t R, int64_t L, const int64_t* n_valid, const int64_t* order,
                 const int64_t* counts, F fn) {
    int64_t start = 0;
    for (int64_t r = 0; r < R; ++r) {
        const int64_t cnt = counts[r];
        const int64_t* samples = order + start;
        start += cnt;
        if (cnt == 0) continue;
        const int rc = fn(r, samples, cnt, n_valid[r] < L ? n_valid[r] : L);
        if (rc != 0) return rc;
    }
    return 0;
}
