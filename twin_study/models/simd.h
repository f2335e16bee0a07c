// Shared by the native kernels: 8 floats as one vector (GCC / Clang vector extension; with
// -march=native the compiler maps it to the machine's 256-bit registers), unaligned loads and
// stores through memcpy (no aliasing or alignment assumptions).
#pragma once

#include <cstring>

typedef float v8f __attribute__((vector_size(32)));

inline v8f load8(const float* p) {
    v8f v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }
