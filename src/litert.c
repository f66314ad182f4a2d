/*
 * litert.c: LiteRT's C API, bound at run time. The ai-edge-litert wheel ships
 * libLiteRt.so but no C headers, so the functions native.c uses are declared in
 * litert.h by hand and looked up with dlsym (symbol version VERS_1.0); the one struct
 * whose layout matters is checked by native.c before use.
 */
#include "postgres.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "storage/fd.h"
#include "utils/memutils.h"

#include "litert.h"

LiteRtApi	lrt;
char	   *lrt_library = NULL;	/* the libLiteRt.so opened, or NULL */
LiteRtHandle lrt_environment = NULL;

/* Opens libLiteRt.so once per backend; false (with a LOG line) if it cannot be used. */
bool
open_litert(const char *path)
{
	void	   *lib;

	if (lrt_library != NULL)
		return strcmp(lrt_library, path) == 0;
	/* DEEPBIND: LiteRT's own symbols first, never a same-named one loaded before it. */
	lib = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
	if (lib == NULL)
	{
		elog(LOG, "pgml: native scoring off, cannot open %s: %s", path, dlerror());
		return false;
	}
#define BIND(name) \
	if ((*(void **) &lrt.name = dlsym(lib, "LiteRt" #name)) == NULL) \
	{ \
		elog(LOG, "pgml: native scoring off, %s lacks LiteRt%s", path, #name); \
		return false; \
	}
	BIND(CreateEnvironment);
	BIND(CreateModelFromFile);
	BIND(DestroyModel);
	BIND(CreateOptions);
	BIND(DestroyOptions);
	BIND(SetOptionsHardwareAccelerators);
	BIND(CreateOpaqueOptions);
	BIND(AddOpaqueOptions);
	BIND(CreateCompiledModel);
	BIND(DestroyCompiledModel);
	BIND(GetNumModelSignatures);
	BIND(GetModelSignature);
	BIND(GetSignatureKey);
	BIND(GetNumSignatureInputs);
	BIND(GetNumSignatureOutputs);
	BIND(GetSignatureInputName);
	BIND(GetSignatureOutputName);
	BIND(GetSignatureInputTensorByIndex);
	BIND(GetSignatureOutputTensorByIndex);
	BIND(GetRankedTensorType);
	BIND(CreateTensorBufferFromHostMemory);
	BIND(DestroyTensorBuffer);
	BIND(RunCompiledModel);
	BIND(CompiledModelResizeInputTensor);
#undef BIND
	lrt_library = MemoryContextStrdup(TopMemoryContext, path);
	return true;
}

/*
 * LiteRT probes for GPU and NPU accelerators on its first use in a process and logs
 * each attempt to stderr, i.e. to the server log of every backend: silenced while
 * the environment and a compiled model are made (their failures come back as status).
 */
int
quiet_stderr(void)
{
	int			saved = dup(STDERR_FILENO);
	int			null = open("/dev/null", O_WRONLY);

	if (saved >= 0 && null >= 0)
		dup2(null, STDERR_FILENO);
	if (null >= 0)
		close(null);
	return saved;
}

void
restore_stderr(int saved)
{
	if (saved >= 0)
	{
		dup2(saved, STDERR_FILENO);
		close(saved);
	}
}

/*
 * LiteRT maps the flatbuffer file (read only); once a compiled model exists, XNNPACK
 * runs on its own packed copy of the weights and the mapping's pages go cold. This
 * backend lets go of them (MADV_DONTNEED: they stay in the page cache, and a read
 * would map them again from the file, which never changes): a CNN backend would
 * otherwise hold its 12 MB of weights twice. Writable mappings are never touched.
 */
void
release_file_pages(const char *path)
{
	FILE	   *maps = AllocateFile("/proc/self/maps", "r");
	char		line[MAXPGPATH + 128];
	size_t		path_length = strlen(path);

	if (maps == NULL)
		return;
	while (fgets(line, sizeof(line), maps) != NULL)
	{
		unsigned long start,
					end;
		char		perms[5];
		size_t		length = strlen(line);

		if (length > path_length && line[length - 1] == '\n'
			&& strncmp(line + length - 1 - path_length, path, path_length) == 0
			&& sscanf(line, "%lx-%lx %4s", &start, &end, perms) == 3 && end > start
			&& perms[0] == 'r' && perms[1] == '-')
			(void) madvise((void *) start, end - start, MADV_DONTNEED);
	}
	FreeFile(maps);
}
