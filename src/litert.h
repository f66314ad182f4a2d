/* litert.h: the few functions of LiteRT's C API that native.c uses (litert.c binds them). */
#ifndef PGML_LITERT_H
#define PGML_LITERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int LiteRtStatus;		/* 0: ok */
typedef void *LiteRtHandle;
typedef size_t LiteRtIndex;

#define LITERT_HW_CPU 1
#define LITERT_FLOAT32 1
#define LITERT_MAX_RANK 8
/* LiteRtRankedTensorType: element type, rank (7 bits, then has_strides), 8 dims, 8
 * strides: 72 bytes. Kept in a larger buffer, and checked (see tensor_shape). */
#define TENSOR_TYPE_SIZE 256

typedef struct TensorType
{
	int32_t		element_type;
	uint32_t	rank_bits;
	int32_t		dims[LITERT_MAX_RANK];
	char		rest[TENSOR_TYPE_SIZE - 4 - 4 - 4 * LITERT_MAX_RANK];
} TensorType;

typedef struct LiteRtApi
{
	LiteRtStatus (*CreateEnvironment) (int, const void *, LiteRtHandle *);
	LiteRtStatus (*CreateModelFromFile) (LiteRtHandle, const char *, LiteRtHandle *);
	void		(*DestroyModel) (LiteRtHandle);
	LiteRtStatus (*CreateOptions) (LiteRtHandle *);
	void		(*DestroyOptions) (LiteRtHandle);
	LiteRtStatus (*SetOptionsHardwareAccelerators) (LiteRtHandle, int);
	LiteRtStatus (*CreateOpaqueOptions) (const char *, void *, void (*) (void *), LiteRtHandle *);
	LiteRtStatus (*AddOpaqueOptions) (LiteRtHandle, LiteRtHandle);
	LiteRtStatus (*CreateCompiledModel) (LiteRtHandle, LiteRtHandle, LiteRtHandle, LiteRtHandle *);
	void		(*DestroyCompiledModel) (LiteRtHandle);
	LiteRtStatus (*GetNumModelSignatures) (LiteRtHandle, LiteRtIndex *);
	LiteRtStatus (*GetModelSignature) (LiteRtHandle, LiteRtIndex, LiteRtHandle *);
	LiteRtStatus (*GetSignatureKey) (LiteRtHandle, const char **);
	LiteRtStatus (*GetNumSignatureInputs) (LiteRtHandle, LiteRtIndex *);
	LiteRtStatus (*GetNumSignatureOutputs) (LiteRtHandle, LiteRtIndex *);
	LiteRtStatus (*GetSignatureInputName) (LiteRtHandle, LiteRtIndex, const char **);
	LiteRtStatus (*GetSignatureOutputName) (LiteRtHandle, LiteRtIndex, const char **);
	LiteRtStatus (*GetSignatureInputTensorByIndex) (LiteRtHandle, LiteRtIndex, LiteRtHandle *);
	LiteRtStatus (*GetSignatureOutputTensorByIndex) (LiteRtHandle, LiteRtIndex, LiteRtHandle *);
	LiteRtStatus (*GetRankedTensorType) (LiteRtHandle, TensorType *);
	LiteRtStatus (*CreateTensorBufferFromHostMemory) (const TensorType *, void *, size_t,
													  void (*) (void *), LiteRtHandle *);
	void		(*DestroyTensorBuffer) (LiteRtHandle);
	LiteRtStatus (*RunCompiledModel) (LiteRtHandle, LiteRtIndex, size_t, LiteRtHandle *,
									  size_t, LiteRtHandle *);
	LiteRtStatus (*CompiledModelResizeInputTensor) (LiteRtHandle, LiteRtIndex, LiteRtIndex,
													const int *, size_t);
} LiteRtApi;

extern LiteRtApi lrt;
extern char *lrt_library;		/* the libLiteRt.so opened, or NULL */
extern LiteRtHandle lrt_environment;

extern bool open_litert(const char *path);
extern void release_file_pages(const char *path);
extern int	quiet_stderr(void);
extern void restore_stderr(int saved);

#endif
