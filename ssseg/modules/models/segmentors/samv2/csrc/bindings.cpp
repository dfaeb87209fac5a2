// Python binding of the CUDA connected-components op (module `ssseg.modules.models.segmentors.samv2._C`).

#include <torch/extension.h>

#include <vector>

// Defined in connected_components.cu (torch::Tensor is at::Tensor).
std::vector<torch::Tensor> connected_components(const torch::Tensor& mask);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def(
      "connected_components", &connected_components, pybind11::arg("mask"),
      "8-connected components of an N x 1 x H x W uint8 CUDA mask -> (labels, counts), both N x 1 x H x W int32.");
}
