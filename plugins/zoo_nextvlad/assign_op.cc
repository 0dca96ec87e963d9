// NeXtVLAD's weighted cluster assignments as a Paddle custom operator, so an exported program (zoo export
// --custom-ops) runs the same one-pass kernel as the dygraph model (assign_kernel.h; _assign.c's header
// describes the arithmetic) where paddle's stock CPU ops take four single-threaded passes.
//
//   zoo_nextvlad_assign(logits [B, T, G*K + G], mask [B, T], bias [G*K + G]; groups, clusters)
//     -> out [B, T, K*G], cluster-major
//
// float32 on the CPU only, forward only (inference). Threads: as many as paddle's math library was given
// (Paddle Inference's set_cpu_math_library_num_threads sets MKL's count), else every core this process may use.
// Built by zoo_nextvlad.custom_op with paddle.utils.cpp_extension against the installed paddle.
// Need: zoo export --custom-ops: the factored export at 1.37-1.50x the expanded one's speed, not 1.22x (nextvlad.md).
// Fallback: the plain export (paddle's ops); tests/test_custom_ops.py.
#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "paddle/extension.h"

extern "C" {
#include "assign_kernel.h"
}

namespace {

int64_t math_threads() {
  typedef int (*Getter)(void);
  for (const char* lib : {"libmklml_intel.so", "libmkl_rt.so", "libmkl_rt.so.2"}) {
    void* handle = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);  // only a library paddle has already loaded
    if (handle == nullptr) continue;
    Getter get = reinterpret_cast<Getter>(dlsym(handle, "MKL_Get_Max_Threads"));
    const int n = get != nullptr ? get() : 0;
    dlclose(handle);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? online : 1;
}

void check_input(const paddle::Tensor& t, const char* name, size_t rank) {
  PD_CHECK(t.is_cpu(), "zoo_nextvlad_assign: ", name, " must be on the CPU (the operator has no GPU kernel)");
  PD_CHECK(t.dtype() == paddle::DataType::FLOAT32, "zoo_nextvlad_assign: ", name, " must be float32");
  PD_CHECK(t.shape().size() == rank, "zoo_nextvlad_assign: ", name, " must have ", rank, " dimensions");
}

}  // namespace

std::vector<paddle::Tensor> AssignForward(const paddle::Tensor& logits, const paddle::Tensor& mask,
                                          const paddle::Tensor& bias, int groups, int clusters) {
  check_input(logits, "logits", 3);
  check_input(mask, "mask", 2);
  check_input(bias, "bias", 1);
  PD_CHECK(groups >= 1 && clusters >= 1 && clusters <= ZOO_ASSIGN_MAX_CLUSTERS,
           "zoo_nextvlad_assign: groups >= 1 and 1 <= clusters <= ", ZOO_ASSIGN_MAX_CLUSTERS);
  const auto& shape = logits.shape();
  const int64_t width = static_cast<int64_t>(groups) * clusters + groups;
  PD_CHECK(shape[2] == width, "zoo_nextvlad_assign: logits have ", shape[2], " columns, expected ", width);
  PD_CHECK(mask.shape()[0] == shape[0] && mask.shape()[1] == shape[1],
           "zoo_nextvlad_assign: the mask's shape does not match the logits' [B, T]");
  PD_CHECK(bias.shape()[0] == width, "zoo_nextvlad_assign: bias has ", bias.shape()[0], " values, expected ",
           width);
  const paddle::Tensor l = logits.is_contiguous() ? logits : logits.contiguous();
  const paddle::Tensor m = mask.is_contiguous() ? mask : mask.contiguous();
  const paddle::Tensor b = bias.is_contiguous() ? bias : bias.contiguous();
  auto out = paddle::empty({shape[0], shape[1], static_cast<int64_t>(groups) * clusters},
                           paddle::DataType::FLOAT32, paddle::CPUPlace());
  zoo_assign(out.data<float>(), l.data<float>(), m.data<float>(), b.data<float>(), shape[0] * shape[1], groups,
             clusters, math_threads());
  return {out};
}

std::vector<std::vector<int64_t>> AssignInferShape(const std::vector<int64_t>& logits,
                                                   const std::vector<int64_t>& mask,
                                                   const std::vector<int64_t>& bias, int groups, int clusters) {
  return {{logits[0], logits[1], static_cast<int64_t>(groups) * clusters}};
}

std::vector<paddle::DataType> AssignInferDtype(const paddle::DataType& logits, const paddle::DataType& mask,
                                               const paddle::DataType& bias) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(zoo_nextvlad_assign)
    .Inputs({"Logits", "Mask", "Bias"})
    .Outputs({"Out"})
    .Attrs({"groups: int", "clusters: int"})
    .SetKernelFn(PD_KERNEL(AssignForward))
    .SetInferShapeFn(PD_INFER_SHAPE(AssignInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(AssignInferDtype));
