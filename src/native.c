/*
 * native.c: the per-row scorer without PL/Python, for the common case.
 *
 * pgml.classify(model, input) and its siblings call pgml_internal.classify_native & co. For a
 * signature that takes one float32 tensor of known size and runs on LiteRT (what
 * pgml_ext.indb.rowpath calls the fast path), a row is parsed here (src/example.c for
 * a tf.Example, or the float4[] packed by pgml_internal.tensor), scored by LiteRT's C API
 * (libLiteRt.so from the ai-edge-litert wheel, opened with dlopen) and answered, with
 * no Python on the way: PL/Python's own call costs about as much as scoring a small
 * model. Python still decides everything once per backend and model: PL/Python's
 * pgml_internal.native_plan says whether a (model version, input form, signature) may take
 * this path and how (the flatbuffer, the input and output, the feature, the labels).
 *
 * This path never decides an error. Anything unusual (no plan, a bad Example, a feature
 * of the wrong kind or length, NaN or Infinity, a LiteRT failure) hands the row to the
 * PL/Python function of the same arguments (pgml_internal.classify for classify_native, ...),
 * which scores it or reports what is wrong exactly as before. Tests compare both paths.
 * pgml.classify_batch and pgml.predict_class_batch work the same way, a chunk of
 * inputs per LiteRT call; SET pgml.native_scoring = off sends everything to PL/Python.
 *
 * The wheel ships no C headers, so the few LiteRT functions used are declared in litert.h.
 * The one struct whose layout matters (LiteRtRankedTensorType, read from the model and
 * handed back) is checked against the plan's shapes before a model is used here; on
 * any mismatch the model stays on the PL/Python path.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "nodes/value.h"
#include "nodes/pg_list.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "example.h"
#include "litert.h"
#include "pgml_ext.h"

/* -- Models ready for this path, per backend ----------------------------------------- */

#define NATIVE_CACHE_SIZE PGML_MAX_CACHED_MODELS
#define BUFFER_ALIGN 64

typedef struct NativeModel
{
	/* the key: model version (its ref), input form, requested signature, use */
	text	   *ref;
	bool		packed;			/* float4[] packed by pgml_internal.tensor, else tf.Example */
	char	   *signature;		/* NULL: the model's default */
	bool		batch;			/* for the batch forms: resized to their chunks */
	uint64		used;			/* for recycling the least recently used */

	bool		usable;			/* false: every row takes the PL/Python path */
	LiteRtHandle model;
	LiteRtHandle compiled;
	LiteRtIndex signature_index;
	int			rows;			/* rows the buffers hold (the model's batch size) */
	TensorType *input_type;
	LiteRtHandle input_buffer;
	float	   *input;
	int			count;			/* floats per input row */
	int			n_outputs;
	TensorType *output_types;
	int		   *output_counts;	/* floats per output row */
	LiteRtHandle *output_buffers;
	float	  **outputs;
	int			scores_output;	/* the output scored */
	int			n_scores;
	char	   *feature;		/* the tf.Example feature that feeds the input */
	int			n_labels;
	char	  **labels;
	MemoryContext context;
} NativeModel;

static NativeModel *native_models[NATIVE_CACHE_SIZE];
static uint64 native_clock = 0;

/* Rows answered here, and rows handed to PL/Python, in this backend (pgml.backend_status). */
static int64 native_rows = 0;
static int64 general_rows = 0;

static void *
aligned_buffer(Size size)
{
	void	   *p = NULL;

	if (posix_memalign(&p, BUFFER_ALIGN, Max(size, BUFFER_ALIGN)) != 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return p;
}

/* A LiteRT buffer over our memory for ROWS rows of TYPE (FLOATS each); false if refused. */
static bool
host_buffer(TensorType *type, int floats, int rows, float **data, LiteRtHandle *buffer)
{
	Size		size = TYPEALIGN(BUFFER_ALIGN, sizeof(float) * (Size) floats * rows);

	type->dims[0] = rows;
	*data = aligned_buffer(size);
	return lrt.CreateTensorBufferFromHostMemory(type, *data, size, NULL, buffer) == 0;
}

static void
drop_host_buffer(float **data, LiteRtHandle *buffer)
{
	if (*buffer)
		lrt.DestroyTensorBuffer(*buffer);
	free(*data);
	*buffer = NULL;
	*data = NULL;
}

static void
drop_buffers(NativeModel *m)
{
	int			i;

	drop_host_buffer(&m->input, &m->input_buffer);
	for (i = 0; i < m->n_outputs; i++)
		drop_host_buffer(&m->outputs[i], &m->output_buffers[i]);
	m->rows = 0;
}

/*
 * Buffers in our memory for ROWS rows, one per input and output: rows are copied in,
 * LiteRT writes the scores out. False if LiteRT refuses one.
 */
static bool
make_buffers(NativeModel *m, int rows)
{
	int			i;

	drop_buffers(m);
	if (!host_buffer(m->input_type, m->count, rows, &m->input, &m->input_buffer))
		return false;
	for (i = 0; i < m->n_outputs; i++)
		if (!host_buffer(&m->output_types[i], m->output_counts[i], rows, &m->outputs[i],
						 &m->output_buffers[i]))
			return false;
	m->rows = rows;
	return true;
}

/* The model and its buffers resized for ROWS rows; false (and unusable) on failure. */
static bool
resize(NativeModel *m, int rows)
{
	if (rows == m->rows)
		return true;
	m->input_type->dims[0] = rows;
	m->usable = lrt.CompiledModelResizeInputTensor(m->compiled, m->signature_index, 0,
												   m->input_type->dims,
												   m->input_type->rank_bits & 0x7f) == 0
		&& make_buffers(m, rows);
	return m->usable;
}

static void
release(NativeModel *m)
{
	drop_buffers(m);
	if (m->compiled)
		lrt.DestroyCompiledModel(m->compiled);
	if (m->model)
		lrt.DestroyModel(m->model);
	MemoryContextDelete(m->context);
}

/*
 * Floats in one row of a tensor type read from the model, with its batch dimension
 * (dynamic, or 1) set to 1; -1 if it is not a float32 tensor of fixed size.
 */
static int
tensor_shape(TensorType *type)
{
	int			rank = type->rank_bits & 0x7f;
	int			i;
	int64		count = 1;

	if (type->element_type != LITERT_FLOAT32 || rank < 1 || rank > LITERT_MAX_RANK)
		return -1;
	if (type->dims[0] != -1 && type->dims[0] != 1)
		return -1;
	type->dims[0] = 1;
	for (i = 1; i < rank; i++)
	{
		if (type->dims[i] <= 0)
			return -1;
		count *= type->dims[i];
		if (count > 1 << 28)
			return -1;
	}
	return (int) count;
}

static LiteRtIndex
find_name(LiteRtHandle signature, bool input, const char *name, LiteRtIndex n)
{
	LiteRtIndex i;

	for (i = 0; i < n; i++)
	{
		const char *got = NULL;
		LiteRtStatus s = input ? lrt.GetSignatureInputName(signature, i, &got)
			: lrt.GetSignatureOutputName(signature, i, &got);

		if (s == 0 && got != NULL && strcmp(got, name) == 0)
			return i;
	}
	return n;
}

/*
 * Builds M from its plan: [libLiteRt.so, flatbuffer, signature, input, output, feature,
 * floats per input, labels...]. Returns false if the model cannot take this path.
 */
static bool
prepare(NativeModel *m, Datum *plan, int n_plan)
{
	char	   *library,
			   *flatbuffer,
			   *signature_key,
			   *input_name,
			   *output_name;
	LiteRtHandle options = NULL,
				signature = NULL,
				tensor = NULL;
	LiteRtIndex n_signatures = 0,
				n_inputs = 0,
				n_outputs = 0,
				i;
	int			saved;
	LiteRtStatus status;

	if (n_plan < 7)
		return false;
	library = TextDatumGetCString(plan[0]);
	flatbuffer = TextDatumGetCString(plan[1]);
	signature_key = TextDatumGetCString(plan[2]);
	input_name = TextDatumGetCString(plan[3]);
	output_name = TextDatumGetCString(plan[4]);
	m->feature = MemoryContextStrdup(m->context, TextDatumGetCString(plan[5]));
	m->count = pg_strtoint32(TextDatumGetCString(plan[6]));
	m->n_labels = n_plan - 7;
	m->labels = MemoryContextAlloc(m->context, sizeof(char *) * Max(m->n_labels, 1));
	for (i = 0; i < m->n_labels; i++)
		m->labels[i] = MemoryContextStrdup(m->context, TextDatumGetCString(plan[7 + i]));
	if (!open_litert(library))
		return false;

	saved = quiet_stderr();
	status = 0;
	if (lrt_environment == NULL)
		status = lrt.CreateEnvironment(0, NULL, &lrt_environment);
	if (status == 0)
		status = lrt.CreateModelFromFile(lrt_environment, flatbuffer, &m->model);
	if (status == 0)
		status = lrt.CreateOptions(&options);
	if (status == 0)
		status = lrt.SetOptionsHardwareAccelerators(options, LITERT_HW_CPU);
	if (status == 0)
		status = lrt.CreateCompiledModel(lrt_environment, m->model, options, &m->compiled);
	if (options)
		lrt.DestroyOptions(options);
	restore_stderr(saved);
	if (status != 0)
	{
		elog(LOG, "pgml: native scoring off for %s: LiteRT status %d", flatbuffer, status);
		return false;
	}

	/* The signature, its one input and its outputs, by name. */
	if (lrt.GetNumModelSignatures(m->model, &n_signatures) != 0)
		return false;
	for (i = 0; i < n_signatures; i++)
	{
		const char *key = NULL;

		if (lrt.GetModelSignature(m->model, i, &signature) == 0
			&& lrt.GetSignatureKey(signature, &key) == 0
			&& key != NULL && strcmp(key, signature_key) == 0)
			break;
	}
	if (i == n_signatures)
		return false;
	m->signature_index = i;
	if (lrt.GetNumSignatureInputs(signature, &n_inputs) != 0 || n_inputs != 1
		|| find_name(signature, true, input_name, n_inputs) != 0
		|| lrt.GetNumSignatureOutputs(signature, &n_outputs) != 0 || n_outputs < 1
		|| n_outputs > 64)
		return false;
	m->scores_output = find_name(signature, false, output_name, n_outputs);
	if (m->scores_output == n_outputs)
		return false;

	/* The input's and the outputs' types, checked against the plan. */
	m->input_type = MemoryContextAllocZero(m->context, sizeof(TensorType));
	if (lrt.GetSignatureInputTensorByIndex(signature, 0, &tensor) != 0
		|| lrt.GetRankedTensorType(tensor, m->input_type) != 0
		|| tensor_shape(m->input_type) != m->count)
		return false;
	m->output_types = MemoryContextAllocZero(m->context, sizeof(TensorType) * n_outputs);
	m->output_counts = MemoryContextAllocZero(m->context, sizeof(int) * n_outputs);
	m->output_buffers = MemoryContextAllocZero(m->context, sizeof(LiteRtHandle) * n_outputs);
	m->outputs = MemoryContextAllocZero(m->context, sizeof(float *) * n_outputs);
	m->n_outputs = n_outputs;
	for (i = 0; i < n_outputs; i++)
		if (lrt.GetSignatureOutputTensorByIndex(signature, i, &tensor) != 0
			|| lrt.GetRankedTensorType(tensor, &m->output_types[i]) != 0
			|| (m->output_counts[i] = tensor_shape(&m->output_types[i])) < 1)
			return false;
	m->n_scores = m->output_counts[m->scores_output];
	return make_buffers(m, 1);
}

static void
forget(int slot)
{
	release(native_models[slot]);
	native_models[slot] = NULL;
}

static bool
same_key(NativeModel *m, text *ref, bool packed, const char *signature, bool batch)
{
	return m->packed == packed && m->batch == batch
		&& VARSIZE_ANY_EXHDR(m->ref) == VARSIZE_ANY_EXHDR(ref)
		&& memcmp(VARDATA_ANY(m->ref), VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref)) == 0
		&& (m->signature == NULL ? signature == NULL
			: signature != NULL && strcmp(m->signature, signature) == 0);
}

/* Asks PL/Python how this model version, input form and signature may be scored here. */
static ArrayType *
native_plan(text *ref, bool packed, const char *signature)
{
	static const Oid argtypes[] = {TEXTOID, BOOLOID, TEXTOID};
	Oid			plan_fn = LookupFuncName(list_make2(makeString("pgml_internal"),
												   makeString("native_plan")),
										 3, argtypes, false);
	LOCAL_FCINFO(fc, 3);
	FmgrInfo	flinfo;
	Datum		result;

	fmgr_info(plan_fn, &flinfo);
	InitFunctionCallInfoData(*fc, &flinfo, 3, InvalidOid, NULL, NULL);
	fc->args[0].value = PointerGetDatum(ref);
	fc->args[0].isnull = false;
	fc->args[1].value = BoolGetDatum(!packed);
	fc->args[1].isnull = false;
	fc->args[2].value = signature ? CStringGetTextDatum(signature) : (Datum) 0;
	fc->args[2].isnull = signature == NULL;
	result = FunctionCallInvoke(fc);
	return fc->isnull ? NULL : DatumGetArrayTypeP(result);
}

/* pgml.model_cache_size, which bounds PL/Python's cache of loaded models too. */
static int
cache_limit(void)
{
	return Max(1, Min(pgml_model_cache_size, NATIVE_CACHE_SIZE));
}

static NativeModel *
native_model(text *ref, bool packed, const char *signature, bool batch)
{
	NativeModel *m;
	ArrayType  *plan;
	Datum	   *items;
	bool	   *nulls;
	int			n,
				i,
				held = 0,
				slot = -1;
	MemoryContext context;

	for (i = 0; i < NATIVE_CACHE_SIZE; i++)
		if ((m = native_models[i]) != NULL)
		{
			if (same_key(m, ref, packed, signature, batch))
			{
				m->used = ++native_clock;
				return m;
			}
			held++;
		}

	plan = native_plan(ref, packed, signature);
	/* Room for one more: recycle the least recently used beyond the limit. */
	for (; held >= cache_limit(); held--)
	{
		int			oldest = -1;

		for (i = 0; i < NATIVE_CACHE_SIZE; i++)
			if (native_models[i] != NULL
				&& (oldest < 0 || native_models[i]->used < native_models[oldest]->used))
				oldest = i;
		forget(oldest);
	}
	for (i = 0; i < NATIVE_CACHE_SIZE && slot < 0; i++)
		if (native_models[i] == NULL)
			slot = i;

	context = AllocSetContextCreate(TopMemoryContext, "pgml native model",
									ALLOCSET_SMALL_SIZES);
	m = MemoryContextAllocZero(context, sizeof(NativeModel));
	m->context = context;
	m->ref = (text *) MemoryContextAlloc(context, VARSIZE_ANY(ref));
	memcpy(m->ref, ref, VARSIZE_ANY(ref));
	m->packed = packed;
	m->batch = batch;
	m->signature = signature ? MemoryContextStrdup(context, signature) : NULL;
	m->used = ++native_clock;
	native_models[slot] = m;
	if (plan != NULL)
	{
		deconstruct_array(plan, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, &n);
		for (i = 0; i < n; i++)
			if (nulls[i])
				break;
		m->usable = i == n && prepare(m, items, n);
	}
	return m;
}

/* -- One row ---------------------------------------------------------------------- */

/*
 * The input floats of a serialized tf.Example, as pgml_ext.indb.examples.DenseReader
 * reads them (the named feature, else the only one), or NULL: example.c answers only
 * for Examples of the plain form, and upb (PL/Python) decides the rest.
 */
static const void *
example_floats(NativeModel *m, bytea *data)
{
	const uint8_t *floats;

	if (!pgml_example_floats((const uint8_t *) VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data),
							 m->feature, (size_t) m->count, &floats))
		return NULL;
	return floats;
}

/*
 * The floats of a float4[] packed by pgml_internal.tensor (ndim, dims, floats), or NULL if they
 * do not fit M: one input (any shape of M's size) or, for BATCH, rows of M's size along
 * the first dimension (*ROWS of them).
 */
static const char *
packed_input(NativeModel *m, bytea *data, bool batch, int *rows)
{
	const char *p = VARDATA_ANY(data);
	Size		size = VARSIZE_ANY_EXHDR(data),
				header;
	int32		ndim,
				dims[MAXDIM];
	int64		count = 1;
	int			i;

	if (size < sizeof(int32))
		return NULL;
	memcpy(&ndim, p, sizeof(int32));
	header = sizeof(int32) * (1 + (Size) ndim);
	if (ndim < (batch ? 2 : 1) || ndim > MAXDIM || size < header)
		return NULL;
	memcpy(dims, p + sizeof(int32), sizeof(int32) * ndim);
	*rows = batch ? dims[0] : 1;
	for (i = batch ? 1 : 0; i < ndim; i++)
		if (dims[i] < 0 || (count *= dims[i]) > PG_INT32_MAX)
			return NULL;
	if (count != m->count || *rows < 1
		|| size != header + sizeof(float) * (Size) count * *rows)
		return NULL;
	return p + header;
}

/*
 * Copies N rows of floats into M's input from row R on; false if any is NaN or
 * Infinity: those go to the general path, which says what is wrong.
 */
static bool
copy_rows(NativeModel *m, int r, const void *values, int n)
{
	Size		count = (Size) m->count * n;
	float	   *row = m->input + (Size) r * m->count;
	const uint32 *bits = (const uint32 *) row;
	uint32		special = 0;
	Size		i;

	memcpy(row, values, sizeof(float) * count);

	/*
	 * NaN and Infinity have every exponent bit set, and only then does adding one to
	 * the exponent carry into the sign bit: an OR of sums, which the compiler
	 * vectorizes (see PG_CFLAGS), instead of a branch per value.
	 */
	for (i = 0; i < count; i++)
		special |= (bits[i] & 0x7f800000) + 0x00800000;
	return (special & 0x80000000) == 0;
}

/* One input (an Example, or a packed float4[]) into row R of M's input. */
static bool
fill_row(NativeModel *m, int r, bytea *data)
{
	const void *values;
	int			rows;

	values = m->packed ? (const void *) packed_input(m, data, false, &rows)
		: example_floats(m, data);
	return values != NULL && copy_rows(m, r, values, 1);
}

static bool
run(NativeModel *m)
{
	return lrt.RunCompiledModel(m->compiled, m->signature_index, 1, &m->input_buffer,
								m->n_outputs, m->output_buffers) == 0;
}

/* numpy's argmax: the first maximum, or the first NaN. */
static int
top_index(const float *scores, int n)
{
	int			best = 0,
				i;

	for (i = 0; i < n; i++)
	{
		if (isnan(scores[i]))
			return i;
		if (scores[i] > scores[best])
			best = i;
	}
	return best;
}

/* -- The SQL functions ------------------------------------------------------------ */

/* A class index's registered label, else the index as text (as model._indexed). */
static Datum
label(NativeModel *m, int index)
{
	if (index < m->n_labels)
		return PointerGetDatum(cstring_to_text(m->labels[index]));
	return PointerGetDatum(cstring_to_text(psprintf("%d", index)));
}

typedef enum
{
	SCORES,						/* float4[]: pgml.predict */
	CLASS_INDEX,				/* int: pgml.predict_class */
	CLASS_LABEL					/* text: pgml.classify */
} Answer;

/* One call site's PL/Python twin (same arguments), looked up once per statement. */
static FmgrInfo *
general_function(FunctionCallInfo fcinfo, const char *name)
{
	if (fcinfo->flinfo->fn_extra == NULL)
	{
		FmgrInfo   *general = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
													 sizeof(FmgrInfo));
		Oid		   *argtypes;
		int			nargs;
		Oid			oid;

		get_func_signature(fcinfo->flinfo->fn_oid, &argtypes, &nargs);
		oid = LookupFuncName(list_make2(makeString("pgml_internal"), makeString((char *) name)),
							 nargs, argtypes, false);

		fmgr_info_cxt(oid, general, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = general;
	}
	return fcinfo->flinfo->fn_extra;
}

/* The row(s) of this call go to the PL/Python twin, counted as its ROWS rows. */
static Datum
call_general(FunctionCallInfo fcinfo, FmgrInfo *general, int rows)
{
	LOCAL_FCINFO(fc, 4);
	Datum		result;
	int			i;

	general_rows += rows;
	InitFunctionCallInfoData(*fc, general, fcinfo->nargs, fcinfo->fncollation, NULL, NULL);
	for (i = 0; i < fcinfo->nargs; i++)
		fc->args[i] = fcinfo->args[i];
	result = FunctionCallInvoke(fc);
	fcinfo->isnull = fc->isnull;
	return result;
}

/*
 * The reference (first argument) must come from pgml_internal.model_ref in this statement:
 * these functions are callable by scorers (the public wrappers are inlined), and what
 * they hand to PL/Python is never a path of the caller's making.
 */
static void
check_ref(FunctionCallInfo fcinfo)
{
	text	   *ref = PG_GETARG_TEXT_PP(0);

	pgml_check_ref(VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref));
}

/* The model for this call: its ref (first argument) and signature (last). */
static NativeModel *
call_model(FunctionCallInfo fcinfo, bool packed, bool batch)
{
	int			signature_arg = fcinfo->nargs - 1;

	return native_model(PG_GETARG_TEXT_PP(0), packed,
						PG_ARGISNULL(signature_arg) ? NULL
						: text_to_cstring(PG_GETARG_TEXT_PP(signature_arg)),
						batch);
}

static Datum
score(FunctionCallInfo fcinfo, Answer answer, bool packed, const char *general_name)
{
	FmgrInfo   *general = general_function(fcinfo, general_name);
	/* the output argument (2): only the default output is scored here */
	bool		named_output = !PG_ARGISNULL(2);
	NativeModel *m;
	int			index;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	check_ref(fcinfo);
	if (!pgml_native_scoring || named_output)
		return call_general(fcinfo, general, 1);
	m = call_model(fcinfo, packed, false);
	/* one value per row has no top class: PL/Python says so */
	if (!m->usable || (answer != SCORES && m->n_scores < 2)
		|| !fill_row(m, 0, PG_GETARG_BYTEA_PP(1)) || !run(m))
		return call_general(fcinfo, general, 1);
	native_rows++;

	if (answer == SCORES)
	{
		const float *scores = m->outputs[m->scores_output];
		Datum	   *values = palloc(sizeof(Datum) * m->n_scores);

		for (index = 0; index < m->n_scores; index++)
			values[index] = Float4GetDatum(scores[index]);
		PG_RETURN_ARRAYTYPE_P(construct_array(values, m->n_scores, FLOAT4OID, sizeof(float4),
											  true, TYPALIGN_INT));
	}
	index = top_index(m->outputs[m->scores_output], m->n_scores);
	if (answer == CLASS_INDEX)
		PG_RETURN_INT32(index);
	return label(m, index);
}


/*
 * A bit pattern LiteRT never writes for us unless the model computes it: outputs are
 * filled with it before a batch's run, and a row still holding it afterwards was not
 * written (an output without a batch dimension): the batch then goes to PL/Python,
 * which says what is wrong, instead of answering from memory nobody wrote.
 */
#define UNWRITTEN 0x7fa5a5a5u

static void
mark_unwritten(float *values, Size n)
{
	uint32		bits = UNWRITTEN;

	for (Size i = 0; i < n; i++)
		memcpy(&values[i], &bits, sizeof(bits));
}

static bool
all_written(const float *values, Size n)
{
	for (Size i = 0; i < n; i++)
	{
		uint32		bits;

		memcpy(&bits, &values[i], sizeof(bits));
		if (bits == UNWRITTEN)
			return false;
	}
	return true;
}

/*
 * Rows for the next runtime call: pgml.batch_chunk_rows at most, starting small and
 * doubling while a call takes under a quarter of the budget, shrinking when it takes
 * more: a cancel lands within about PGML_CHUNK_BUDGET_MS whatever the model costs.
 */
static int
next_chunk(int chunk, double elapsed_ms)
{
	if (elapsed_ms > PGML_CHUNK_BUDGET_MS)
		chunk = Max(1, (int) (chunk * (PGML_CHUNK_BUDGET_MS / elapsed_ms)));
	else if (elapsed_ms < PGML_CHUNK_BUDGET_MS / 4.0)
		chunk = chunk > pgml_batch_chunk_rows / 2 ? pgml_batch_chunk_rows : chunk * 2;
	return Min(chunk, pgml_batch_chunk_rows);
}

/*
 * The batch forms that answer an array (classify_batch: text[], predict_class_batch:
 * int[]): chunks of inputs scored in one LiteRT call each. NULL inputs give NULL. Any
 * input this path cannot take sends the whole batch to the PL/Python twin.
 */
static Datum
score_batch(FunctionCallInfo fcinfo, Answer answer, bool packed, const char *general_name)
{
	FmgrInfo   *general = general_function(fcinfo, general_name);
	NativeModel *m;
	Datum	   *inputs = NULL,
			   *out;
	bool	   *missing = NULL,
			   *out_null;
	const char *packed_data = NULL;
	int			n,
				present,
				next = 0,
				chunk = Min(8, pgml_batch_chunk_rows),
				*index,
				lower = 1;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	check_ref(fcinfo);
	/* a named output (argument 2): PL/Python scores that head */
	if (!pgml_native_scoring || !PG_ARGISNULL(2))
		return call_general(fcinfo, general, 0);
	m = call_model(fcinfo, packed, true);
	if (!m->usable || m->n_scores < 2)
		return call_general(fcinfo, general, 0);
	if (packed)
		packed_data = packed_input(m, PG_GETARG_BYTEA_PP(1), true, &n);
	else
	{
		ArrayType  *array = PG_GETARG_ARRAYTYPE_P(1);

		if (ARR_NDIM(array) != 1)
			return call_general(fcinfo, general, 0);
		deconstruct_array(array, BYTEAOID, -1, false, TYPALIGN_INT, &inputs, &missing, &n);
	}
	if ((packed && packed_data == NULL) || n < 1)
		return call_general(fcinfo, general, 0);
	present = n;
	for (int i = 0; missing != NULL && i < n; i++)
		present -= missing[i];

	out = palloc(sizeof(Datum) * n);
	out_null = palloc(sizeof(bool) * n);
	index = palloc(sizeof(int) * Min(n, pgml_batch_chunk_rows));
	while (next < n)
	{
		int			rows = 0,
					r;
		instr_time	started,
					elapsed;
		float	   *scores;

		/* the next CHUNK inputs that are not NULL */
		for (; next < n && rows < chunk; next++)
		{
			out_null[next] = missing != NULL && missing[next];
			if (!out_null[next])
				index[rows++] = next;
		}
		if (rows == 0)
			break;
		CHECK_FOR_INTERRUPTS();
		if (!resize(m, rows))
			return call_general(fcinfo, general, present);
		/* a float4[] batch has no NULLs: its chunk's rows are one run of floats */
		if (packed && !copy_rows(m, 0, packed_data + sizeof(float) * (Size) m->count * index[0],
								 rows))
			return call_general(fcinfo, general, present);
		for (r = 0; !packed && r < rows; r++)
			if (!fill_row(m, r, (bytea *) PG_DETOAST_DATUM_PACKED(inputs[index[r]])))
				return call_general(fcinfo, general, present);
		scores = m->outputs[m->scores_output];
		mark_unwritten(scores, (Size) rows * m->n_scores);
		INSTR_TIME_SET_CURRENT(started);
		if (!run(m) || !all_written(scores, (Size) rows * m->n_scores))
			return call_general(fcinfo, general, present);
		INSTR_TIME_SET_CURRENT(elapsed);
		INSTR_TIME_SUBTRACT(elapsed, started);
		chunk = next_chunk(chunk, INSTR_TIME_GET_MILLISEC(elapsed));
		for (r = 0; r < rows; r++)
		{
			int			top = top_index(scores + (Size) r * m->n_scores, m->n_scores);

			out[index[r]] = answer == CLASS_INDEX ? Int32GetDatum(top) : label(m, top);
		}
	}
	native_rows += present;		/* counted once the whole batch is answered here */
	if (answer == CLASS_INDEX)
		PG_RETURN_ARRAYTYPE_P(construct_md_array(out, out_null, 1, &n, &lower, INT4OID,
												 sizeof(int32), true, TYPALIGN_INT));
	PG_RETURN_ARRAYTYPE_P(construct_md_array(out, out_null, 1, &n, &lower, TEXTOID, -1, false,
											 TYPALIGN_INT));
}

/* Each SQL function: its entry (score or score_batch), answer, input form and twin. */
#define NATIVE_FUNCTION(c_name, entry, answer, packed, general) \
	PG_FUNCTION_INFO_V1(c_name); \
	Datum c_name(PG_FUNCTION_ARGS) { return entry(fcinfo, answer, packed, general); }

NATIVE_FUNCTION(pgml_predict_native, score, SCORES, false, "predict")
NATIVE_FUNCTION(pgml_predict_class_native, score, CLASS_INDEX, false, "predict_class")
NATIVE_FUNCTION(pgml_classify_native, score, CLASS_LABEL, false, "classify")
NATIVE_FUNCTION(pgml_predict_tensor_native, score, SCORES, true, "predict_tensor")
NATIVE_FUNCTION(pgml_predict_class_tensor_native, score, CLASS_INDEX, true,
				"predict_class_tensor")
NATIVE_FUNCTION(pgml_classify_tensor_native, score, CLASS_LABEL, true, "classify_tensor")
NATIVE_FUNCTION(pgml_classify_batch_native, score_batch, CLASS_LABEL, false, "classify_batch")
NATIVE_FUNCTION(pgml_classify_batch_tensor_native, score_batch, CLASS_LABEL, true,
				"classify_batch_tensor")
NATIVE_FUNCTION(pgml_predict_class_batch_native, score_batch, CLASS_INDEX, false,
				"predict_class_batch")
NATIVE_FUNCTION(pgml_predict_class_batch_tensor_native, score_batch, CLASS_INDEX, true,
				"predict_class_batch_tensor")

PG_FUNCTION_INFO_V1(pgml_clear_native_cache);

/* Forgets the models loaded for this path in this backend (pgml.clear_cache). */
Datum
pgml_clear_native_cache(PG_FUNCTION_ARGS)
{
	int			i,
				n = 0;

	for (i = 0; i < NATIVE_CACHE_SIZE; i++)
		if (native_models[i] != NULL)
		{
			forget(i);
			n++;
		}
	PG_RETURN_INT32(n);
}

PG_FUNCTION_INFO_V1(pgml_native_status);

/* {"native_models": models ready here, "native_rows", "general_rows", "litert_c_loaded"} */
Datum
pgml_native_status(PG_FUNCTION_ARGS)
{
	int			i,
				usable = 0;

	for (i = 0; i < NATIVE_CACHE_SIZE; i++)
		if (native_models[i] != NULL && native_models[i]->usable)
			usable++;
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("{\"native_models\": %d, \"native_rows\": "
											  INT64_FORMAT ", \"general_rows\": " INT64_FORMAT
											  ", \"litert_c_loaded\": %s}",
											  usable, native_rows, general_rows,
											  lrt_library ? "true" : "false")));
}
