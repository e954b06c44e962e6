// A CPU emulation of the few CUDA constructs the kernels of snn_delays_ext/csrc/cuda use, so
// that their host and device code runs (slowly) on a machine without a GPU and can be compared
// with the CPU ops (tests/test_cuda_emulation.py). Each block runs with one coroutine per CUDA
// thread (a ucontext fiber on one OS thread, switching at __syncthreads()); blocks run in turn,
// so __shared__ arrays (static here) belong to the running block. Not a model of the GPU's
// memory ordering or timing: it checks indices, synchronisation points and the arithmetic, not
// races a barrier would hide.
#pragma once
#include <setjmp.h>
#include <ucontext.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include <ATen/ATen.h>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct EmuIdx { unsigned x = 0, y = 0, z = 0; };

// One fiber (ucontext coroutine) per CUDA thread of the running block, all on the calling OS
// thread: __syncthreads() yields to the scheduler, which resumes every fiber in turn, round after
// round, until all have returned. So a block's threads interleave only at barriers, and the
// emulation is deterministic.
// A fiber starts on its own stack with makecontext/swapcontext; after that the switches are
// _setjmp/_longjmp (no signal-mask system call per switch, which swapcontext makes).
struct EmuFiber {
  ucontext_t ctx;
  jmp_buf jb;
  std::vector<char> stack;
  bool started = false, done = false;
};
inline EmuIdx threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::vector<unsigned char> emu_shmem;
inline std::vector<EmuFiber> emu_fibers;
inline ucontext_t emu_main;
inline jmp_buf emu_sched;
inline unsigned emu_cur = 0;
inline int emu_round_count = 0, emu_last_count = 0;
inline std::function<void()>* emu_body = nullptr;

inline void __syncthreads() {
  if (!_setjmp(emu_fibers[emu_cur].jb)) _longjmp(emu_sched, 1);
}
inline int __syncthreads_count(int p) {
  emu_round_count += p != 0;
  __syncthreads();
  return emu_last_count;
}
// Warp shuffles: each thread leaves its value in a slot between two block-wide barriers, so the
// emulation needs every thread of the block to make the same shuffle calls (a reduction that the
// whole block runs, as the kernels do); lanes outside the warp's width keep their own value.
inline std::vector<std::array<unsigned char, 16>> emu_lanes;
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  static_assert(sizeof(T) <= 16, "shuffle of a value of at most 16 bytes");
  if (emu_lanes.size() < blockDim.x) emu_lanes.resize(blockDim.x);
  const unsigned me = threadIdx.x;
  std::memcpy(emu_lanes[me].data(), &v, sizeof(T));
  __syncthreads();
  T r = v;
  if (me % static_cast<unsigned>(width) + delta < static_cast<unsigned>(width) && me + delta < blockDim.x)
    std::memcpy(&r, emu_lanes[me + delta].data(), sizeof(T));
  __syncthreads();
  return r;
}
inline void emu_trampoline() {
  (*emu_body)();
  emu_fibers[emu_cur].done = true;
  _longjmp(emu_sched, 1);  // back to the scheduler (never returns here)
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __align__(x) alignas(x)
#define __shared__ static
inline float __fmul_rn(float a, float b) { return a * b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dadd_rn(double a, double b) { return a + b; }
using std::max;
using std::min;
typedef int cudaError_t;
typedef int cudaStream_t;
#define cudaSuccess 0
inline int cudaGetLastError() { return 0; }
// the emulated device: 8 multiprocessors (kernels that size their grids by it see a small GPU)
// and $SDX_EMU_SHARED_OPTIN bytes of shared memory a block may opt in to (default 16 KiB)
enum EmuDevAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum EmuFuncAttr { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline int cudaGetDevice(int* d) { *d = 0; return 0; }
inline int cudaDeviceGetAttribute(int* v, EmuDevAttr a, int) {
  const char* optin = std::getenv("SDX_EMU_SHARED_OPTIN");
  *v = a == cudaDevAttrMultiProcessorCount ? 8 : (optin ? std::atoi(optin) : 16 * 1024);
  return 0;
}
template <class K>
inline int cudaFuncSetAttribute(K, EmuFuncAttr, int) { return 0; }
inline const char* cudaGetErrorString(int) { return "no error"; }
#define C10_CUDA_KERNEL_LAUNCH_CHECK() \
  do {                                 \
  } while (0)
template <typename T>
inline void gpuAtomicAdd(T* p, T v) { *p += v; }  // one OS thread: an add is atomic
namespace c10 {
namespace cuda {
struct FakeStream {
  operator int() const { return 0; }
  int stream() const { return 0; }
};
inline FakeStream getCurrentCUDAStream() { return {}; }
struct CUDAGuard {
  template <class D>
  explicit CUDAGuard(D) {}
};
}  // namespace cuda
}  // namespace c10

struct EmuCfg {
  dim3 grid, block;
  size_t shared;
};
template <class G, class B, class S = int, class St = int>
inline EmuCfg emu_cfg(G g, B b, S s = 0, St = 0) {
  return EmuCfg{dim3(g), dim3(b), static_cast<size_t>(s)};
}

template <class K, class... A>
inline void emu_launch(EmuCfg c, K kernel, A... args) {
  constexpr size_t kStack = 256 * 1024;
  gridDim = c.grid;
  blockDim = c.block;
  const unsigned nt = c.block.x * c.block.y * c.block.z;
  std::function<void()> body = [&] { kernel(args...); };
  emu_body = &body;
  if (emu_fibers.size() < nt) emu_fibers.resize(nt);
  for (unsigned bz = 0; bz < c.grid.z; ++bz)
    for (unsigned by = 0; by < c.grid.y; ++by)
      for (unsigned bx = 0; bx < c.grid.x; ++bx) {
        emu_shmem.assign(c.shared + 64, 0xFF);  // garbage (NaN as floats): a kernel zeroes what it reads
        for (unsigned t = 0; t < nt; ++t) {
          EmuFiber& f = emu_fibers[t];
          if (f.stack.size() < kStack) f.stack.resize(kStack);
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = &emu_main;
          makecontext(&f.ctx, emu_trampoline, 0);
          f.started = f.done = false;
        }
        blockIdx = EmuIdx{bx, by, bz};
        for (bool running = true; running;) {
          running = false;
          for (unsigned t = 0; t < nt; ++t) {
            if (emu_fibers[t].done) continue;
            emu_cur = t;
            threadIdx = EmuIdx{t, 0, 0};
            EmuFiber& f = emu_fibers[t];
            if (!_setjmp(emu_sched)) {
              if (!f.started) {
                f.started = true;
                swapcontext(&emu_main, &f.ctx);  // first entry: onto the fiber's stack
              } else {
                _longjmp(f.jb, 1);
              }
            }
            running = running || !f.done;
          }
          emu_last_count = emu_round_count;  // what __syncthreads_count returns after this round
          emu_round_count = 0;
        }
      }
}
