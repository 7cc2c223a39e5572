// cuda_vmm.cuh: cuMemCreate / cuMemImportFromShareableHandle, then reserve,
// map and grant access; the reverse on close.
#include "cuda_vmm.cuh"

#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

namespace {

enum { F_GRAN, F_CREATE, F_IMPORT, F_EXPORT, F_RESERVE, F_MAP, F_ACCESS, F_UNMAP, F_FREE, F_RELEASE, F_N };
const char *const NAMES[F_N] = {"cuMemGetAllocationGranularity", "cuMemCreate", "cuMemImportFromShareableHandle",
                                "cuMemExportToShareableHandle", "cuMemAddressReserve", "cuMemMap",
                                "cuMemSetAccess", "cuMemUnmap", "cuMemAddressFree", "cuMemRelease"};

typedef CUresult (*gran_fn)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);
typedef CUresult (*create_fn)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                              unsigned long long);
typedef CUresult (*import_fn)(CUmemGenericAllocationHandle *, void *, CUmemAllocationHandleType);
typedef CUresult (*export_fn)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long);
typedef CUresult (*reserve_fn)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*map_fn)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
typedef CUresult (*access_fn)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
typedef CUresult (*unmap_fn)(CUdeviceptr, size_t);
typedef CUresult (*free_fn)(CUdeviceptr, size_t);
typedef CUresult (*release_fn)(CUmemGenericAllocationHandle);

int load(cuda_vmm *v, pi_error *err)
{
    for (int i = 0; i < F_N; i++) {
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion(NAMES[i], &v->fn[i], 12000, cudaEnableDefault, &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess || !v->fn[i]) {
            (void)cudaGetLastError();
            return pi_error_set(err, "cuda vmm: the driver has no %s (a driver for CUDA 12 or later is needed)",
                                NAMES[i]);
        }
    }
    return 0;
}

CUmemAllocationProp prop_of(int device, int host_numa)
{
    CUmemAllocationProp p;
    memset(&p, 0, sizeof p);
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location.type = host_numa >= 0 ? CU_MEM_LOCATION_TYPE_HOST_NUMA : CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = host_numa >= 0 ? host_numa : device;
    p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    return p;
}

}  // namespace

#define DRV(call, what)                                                                          \
    do {                                                                                         \
        CUresult r_ = (call);                                                                    \
        if (r_ != CUDA_SUCCESS) {                                                                \
            cuda_vmm_close(v);                                                                   \
            return pi_error_set(err, "cuda vmm: %s failed (CUresult %d%s)", what, (int)r_,        \
                                r_ == CUDA_ERROR_OUT_OF_MEMORY ? ": out of device memory" : "");           \
        }                                                                                        \
    } while (0)

int cuda_vmm_open(cuda_vmm *v, int device, size_t size, int fd, pi_error *err)
{
    return cuda_vmm_open_at(v, device, -1, size, fd, err);
}

int cuda_vmm_open_at(cuda_vmm *v, int device, int host_numa, size_t size, int fd, pi_error *err)
{
    memset(v, 0, sizeof *v);
    v->device = device;
    if (load(v, err) != 0)
        return -1;
    CUmemAllocationProp prop = prop_of(device, host_numa);
    size_t gran = 0;
    DRV(((gran_fn)v->fn[F_GRAN])(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM), "cuMemGetAllocationGranularity");
    if (gran == 0)
        gran = (size_t)2 << 20;
    v->size = (size + gran - 1) / gran * gran;
    if (fd >= 0)
        DRV(((import_fn)v->fn[F_IMPORT])(&v->handle, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
            "cuMemImportFromShareableHandle");
    else
        DRV(((create_fn)v->fn[F_CREATE])(&v->handle, v->size, &prop, 0), "cuMemCreate");
    v->held = 1;
    DRV(((reserve_fn)v->fn[F_RESERVE])(&v->ptr, v->size, gran, 0, 0), "cuMemAddressReserve");
    v->reserved = 1;
    DRV(((map_fn)v->fn[F_MAP])(v->ptr, v->size, 0, v->handle, 0), "cuMemMap");
    v->mapped = 1;
    // The device reads and writes it; host memory is also the CPU's, at
    // the same address.
    CUmemAccessDesc acc[2];
    memset(acc, 0, sizeof acc);
    acc[0].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    acc[0].location.id = device;
    acc[0].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    acc[1].location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
    acc[1].location.id = host_numa;
    acc[1].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    DRV(((access_fn)v->fn[F_ACCESS])(v->ptr, v->size, acc, host_numa >= 0 ? 2 : 1), "cuMemSetAccess");
    return 0;
}

int cuda_vmm_export(cuda_vmm *v, int *fd, pi_error *err)
{
    int out = -1;
    CUresult r = ((export_fn)v->fn[F_EXPORT])(&out, v->handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
    if (r != CUDA_SUCCESS)
        return pi_error_set(err, "cuda vmm: cuMemExportToShareableHandle failed (CUresult %d)", (int)r);
    *fd = out;
    return 0;
}

void cuda_vmm_close(cuda_vmm *v)
{
    if (v->mapped)
        ((unmap_fn)v->fn[F_UNMAP])(v->ptr, v->size);
    if (v->reserved)
        ((free_fn)v->fn[F_FREE])(v->ptr, v->size);
    if (v->held)
        ((release_fn)v->fn[F_RELEASE])(v->handle);
    v->mapped = v->reserved = v->held = 0;
}
