// 8-connected components of a batch of binary masks (N x 1 x H x W uint8, nonzero = foreground) with a
// pixel-level union-find. Output convention (shared with ops.py and with the official SAM 2 op):
//   labels[p] = 0 on the background, else 1 + min over the component of cell_corner(r, c), where
//               cell_corner(r, c) = (r & ~1) * W + (c & ~1) is the top-left corner of the 2 x 2 cell of (r, c);
//   counts[p] = 0 on the background, else the area of p's component.
//
// Kernels (grid: x over columns, y over rows, z over masks; each thread owns one pixel):
//   1. init_parents:   parent[p] = p.
//   2. link_neighbours: for every foreground pixel, union with its foreground neighbours among the four that
//                      precede it in raster order (W, NW, N, NE); together these cover every 8-adjacent pair.
//   3. resolve_roots:  parent[p] = root(p); accumulate each component's area and smallest cell corner at its root.
//   4. write_outputs:  labels / counts from the per-root statistics.
//
// Invariant that keeps the concurrent union-find correct: parent[p] <= p at all times and a parent only ever
// decreases (atomicMin), so following parents always ends at the smallest index of the tree, which is its root.
// `parent` is the `labels` output buffer; it is overwritten in place by kernel 4 once the roots are resolved.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <climits>
#include <vector>

namespace ssseg_samv2 {

constexpr int kTileCols = 32;
constexpr int kTileRows = 8;
constexpr int64_t kMaxGridZ = 65535;

// Root of the tree holding `p`. Other threads lower parents concurrently, so every read goes to memory.
__device__ __forceinline__ int32_t find_root(const int32_t* parent, int32_t p) {
  const volatile int32_t* vparent = parent;
  int32_t next = vparent[p];
  while (next != p) {
    p = next;
    next = vparent[p];
  }
  return p;
}

// Merge the trees of `a` and `b` by hanging the larger root under the smaller one.
__device__ void unite(int32_t* parent, int32_t a, int32_t b) {
  while (true) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) {
      return;
    }
    if (a < b) {
      const int32_t tmp = a;
      a = b;
      b = tmp;
    }
    // Succeeds iff `a` is still a root. Otherwise another thread linked `a` to `previous` meanwhile; atomicMin may
    // still have moved `a` under `b`, so `previous` must now be joined with `b` as well: retry with it.
    const int32_t previous = atomicMin(parent + a, b);
    if (previous == a) {
      return;
    }
    a = previous;
  }
}

__global__ void init_parents(int32_t* parent, const int32_t height, const int32_t width) {
  const int32_t col = blockIdx.x * blockDim.x + threadIdx.x;
  const int32_t row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= height || col >= width) {
    return;
  }
  const int64_t offset = static_cast<int64_t>(blockIdx.z) * height * width;
  const int32_t p = row * width + col;
  parent[offset + p] = p;
}

__global__ void link_neighbours(
    const uint8_t* mask, int32_t* parent, const int32_t height, const int32_t width) {
  const int32_t col = blockIdx.x * blockDim.x + threadIdx.x;
  const int32_t row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= height || col >= width) {
    return;
  }
  const int64_t offset = static_cast<int64_t>(blockIdx.z) * height * width;
  mask += offset;
  parent += offset;
  const int32_t p = row * width + col;
  if (!mask[p]) {
    return;
  }
  if (col > 0 && mask[p - 1]) {
    unite(parent, p, p - 1);
  }
  if (row > 0) {
    const int32_t up = p - width;
    if (col > 0 && mask[up - 1]) {
      unite(parent, p, up - 1);
    }
    if (mask[up]) {
      unite(parent, p, up);
    }
    if (col + 1 < width && mask[up + 1]) {
      unite(parent, p, up + 1);
    }
  }
}

__global__ void resolve_roots(
    const uint8_t* mask,
    int32_t* parent,
    int32_t* area,
    int32_t* first_corner,
    const int32_t height,
    const int32_t width) {
  const int32_t col = blockIdx.x * blockDim.x + threadIdx.x;
  const int32_t row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= height || col >= width) {
    return;
  }
  const int64_t offset = static_cast<int64_t>(blockIdx.z) * height * width;
  const int32_t p = row * width + col;
  if (!mask[offset + p]) {
    return;
  }
  // No more unions happen now, so pointing p straight at its root is safe even while others still walk
  // through p: they read either the old parent or the root, both on their path to the same root.
  const int32_t root = find_root(parent + offset, p);
  parent[offset + p] = root;
  atomicAdd(area + offset + root, 1);
  atomicMin(first_corner + offset + root, (row & ~1) * width + (col & ~1));
}

__global__ void write_outputs(
    const uint8_t* mask,
    int32_t* labels,
    int32_t* counts,
    const int32_t* area,
    const int32_t* first_corner,
    const int32_t height,
    const int32_t width) {
  const int32_t col = blockIdx.x * blockDim.x + threadIdx.x;
  const int32_t row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= height || col >= width) {
    return;
  }
  const int64_t q = static_cast<int64_t>(blockIdx.z) * height * width + row * width + col;
  if (!mask[q]) {
    labels[q] = 0;
    counts[q] = 0;
    return;
  }
  // labels[q] holds q's root (set by resolve_roots); no other thread reads this slot any more.
  const int64_t root = static_cast<int64_t>(blockIdx.z) * height * width + labels[q];
  labels[q] = first_corner[root] + 1;
  counts[q] = area[root];
}

} // namespace ssseg_samv2

std::vector<at::Tensor> connected_components(const at::Tensor& mask) {
  TORCH_CHECK(mask.is_cuda(), "connected_components: mask must be a CUDA tensor");
  TORCH_CHECK(
      mask.dim() == 4 && mask.size(1) == 1, "connected_components: mask must have shape N x 1 x H x W, got ",
      mask.sizes());
  TORCH_CHECK(
      mask.scalar_type() == at::kByte, "connected_components: mask must be uint8, got ", mask.scalar_type());
  TORCH_CHECK(
      mask.size(2) * mask.size(3) < INT_MAX, "connected_components: H * W must fit in int32, got ", mask.size(2),
      " x ", mask.size(3));

  const c10::cuda::CUDAGuard device_guard(mask.device());
  const at::Tensor input = mask.contiguous();
  const int64_t batch = input.size(0);
  const int32_t height = static_cast<int32_t>(input.size(2));
  const int32_t width = static_cast<int32_t>(input.size(3));

  const auto int_options = at::TensorOptions().dtype(at::kInt).device(input.device());
  at::Tensor labels = at::empty({batch, 1, height, width}, int_options);
  at::Tensor counts = at::empty({batch, 1, height, width}, int_options);
  if (input.numel() == 0) {
    return {labels, counts};
  }
  at::Tensor area = at::zeros({batch, 1, height, width}, int_options);
  at::Tensor first_corner = at::full({batch, 1, height, width}, INT_MAX, int_options);

  const dim3 block(ssseg_samv2::kTileCols, ssseg_samv2::kTileRows);
  const int64_t pixels = static_cast<int64_t>(height) * width;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  // gridDim.z is limited to 65535, so very large batches are processed in chunks.
  for (int64_t start = 0; start < batch; start += ssseg_samv2::kMaxGridZ) {
    const int64_t chunk = std::min(batch - start, ssseg_samv2::kMaxGridZ);
    const dim3 grid(
        (width + ssseg_samv2::kTileCols - 1) / ssseg_samv2::kTileCols,
        (height + ssseg_samv2::kTileRows - 1) / ssseg_samv2::kTileRows, static_cast<unsigned int>(chunk));
    const uint8_t* mask_ptr = input.data_ptr<uint8_t>() + start * pixels;
    int32_t* labels_ptr = labels.data_ptr<int32_t>() + start * pixels;
    int32_t* counts_ptr = counts.data_ptr<int32_t>() + start * pixels;
    int32_t* area_ptr = area.data_ptr<int32_t>() + start * pixels;
    int32_t* corner_ptr = first_corner.data_ptr<int32_t>() + start * pixels;

    ssseg_samv2::init_parents<<<grid, block, 0, stream>>>(labels_ptr, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ssseg_samv2::link_neighbours<<<grid, block, 0, stream>>>(mask_ptr, labels_ptr, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ssseg_samv2::resolve_roots<<<grid, block, 0, stream>>>(mask_ptr, labels_ptr, area_ptr, corner_ptr, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ssseg_samv2::write_outputs<<<grid, block, 0, stream>>>(
        mask_ptr, labels_ptr, counts_ptr, area_ptr, corner_ptr, height, width);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {labels, counts};
}
