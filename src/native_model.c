/*
 * native_model.c: model versions made ready for the C scorer, per backend.
 *
 * Registration decides once per model version, input form and signature whether rows
 * may take the C path, and how, and stores the plan with the version
 * (pgml.model_versions.native_plans, read through pgml_internal.stored_plan): a backend
 * or parallel worker loads it with no Python at all. Versions registered before plans
 * were stored ask PL/Python's pgml_internal.native_plan, which works the same plan out.
 * A plan is
 *   [libLiteRt.so, flatbuffer file, signature, output, classes output, top k, only feature, inputs,
 *    (input, feature, dtype, values, default) per input, (class index, label) ...]
 * from the plan stored at registration. The classes: per position of the top score,
 * or, with a classes output (keys of a vocabulary), per key. Top k > 0: the output
 * holds probabilities whose sorted top k are the scores (TF Serving's top_k, which
 * cutting.py leaves to pgml), and the top class is the highest one's position. This file opens the flatbuffer with LiteRT's
 * C API, checks the plan against the model's own signature (names, element types,
 * sizes), and keeps buffers in our memory that rows are copied into and scores read
 * from. Anything that does not fit leaves the model unusable here: its rows then go to
 * PL/Python, which scores them or says what is wrong.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "portability/instr_time.h"
#include "utils/memutils.h"

#include "example.h"
#include "native.h"
#include "pgml_ext.h"

#define NATIVE_CACHE_SIZE PGML_MAX_CACHED_MODELS
#define BUFFER_ALIGN 64
#define PLAN_FORMAT "pgml-plan-2"	/* plan[0]: the layout below; others are not read */
#define PLAN_HEAD 10			/* plan items before the inputs */
#define PLAN_INPUT 5			/* plan items per input */
#define LITERT_INT32 2
#define LITERT_INT64 4

static NativeModel *native_models[NATIVE_CACHE_SIZE];
static uint64 native_clock = 0;

static void *
aligned_buffer(Size size)
{
	void	   *p = NULL;

	if (posix_memalign(&p, BUFFER_ALIGN, Max(size, BUFFER_ALIGN)) != 0)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return p;
}

/* A LiteRT buffer over our memory for ROWS rows of TYPE (BYTES each); false if refused. */
static bool
host_buffer(TensorType *type, Size bytes, int rows, char **data, LiteRtHandle *buffer)
{
	Size		size = TYPEALIGN(BUFFER_ALIGN, bytes * rows);

	type->dims[0] = rows;
	*data = aligned_buffer(size);
	return lrt.CreateTensorBufferFromHostMemory(type, *data, size, NULL, buffer) == 0;
}

static void
drop_host_buffer(char **data, LiteRtHandle *buffer)
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

	for (i = 0; i < m->n_inputs; i++)
		drop_host_buffer(&m->inputs[i].data, &m->inputs[i].buffer);
	for (i = 0; i < m->n_outputs; i++)
		drop_host_buffer(&m->outputs[i].data, &m->outputs[i].buffer);
	m->rows = 0;
}

/*
 * Buffers in our memory for ROWS rows, one per input and output: rows are copied in,
 * LiteRT writes the outputs. False if LiteRT refuses one.
 */
static bool
make_buffers(NativeModel *m, int rows)
{
	int			i;

	drop_buffers(m);
	for (i = 0; i < m->n_inputs; i++)
	{
		NativeInput *in = &m->inputs[i];

		if (!host_buffer(&in->type, in->width * in->count, rows, &in->data, &in->buffer))
			return false;
		m->input_buffers[i] = in->buffer;
	}
	for (i = 0; i < m->n_outputs; i++)
	{
		NativeOutput *out = &m->outputs[i];

		if (!host_buffer(&out->type, out->width * out->count, rows, &out->data, &out->buffer))
			return false;
		m->output_buffers[i] = out->buffer;
	}
	m->rows = rows;
	return true;
}

bool
native_resize(NativeModel *m, int rows)
{
	int			i;

	if (rows == m->rows)
		return true;
	for (i = 0; i < m->n_inputs && m->usable; i++)
	{
		TensorType *type = &m->inputs[i].type;

		type->dims[0] = rows;
		m->usable = lrt.CompiledModelResizeInputTensor(m->compiled, m->signature_index, i,
													   type->dims,
													   type->rank_bits & 0x7f) == 0;
	}
	m->usable = m->usable && make_buffers(m, rows);
	return m->usable;
}

bool
native_run(NativeModel *m)
{
	return lrt.RunCompiledModel(m->compiled, m->signature_index, m->n_inputs, m->input_buffers,
								m->n_outputs, m->output_buffers) == 0;
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

/* Bytes per value of a LiteRT element type this path reads or writes; 0 for others. */
static Size
element_width(int32 element_type)
{
	switch (element_type)
	{
		case LITERT_FLOAT32:
		case LITERT_INT32:
			return 4;
		case LITERT_INT64:
			return 8;
		default:
			return 0;
	}
}

/*
 * Values in one row of a tensor type read from the model, with its batch dimension
 * (dynamic, or 1) set to 1; -1 if it is not a tensor of fixed size.
 */
static int
tensor_shape(TensorType *type)
{
	int			rank = type->rank_bits & 0x7f;
	int			i;
	int64		count = 1;

	if (rank < 1 || rank > LITERT_MAX_RANK)
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
 * COUNT values of KIND from TEXT (space-separated, as native_plan writes them) into
 * VALUES; false unless exactly COUNT finite ones.
 */
static bool
parse_default(const char *text, int kind, int count, void *values)
{
	char	   *end;
	int			i;

	for (i = 0; i < count; i++)
	{
		errno = 0;
		if (kind == PGML_FLOATS)
		{
			float		v = strtof(text, &end);

			if (!isfinite(v))
				return false;
			((float *) values)[i] = v;
		}
		else
			((int64 *) values)[i] = strtoll(text, &end, 10);
		if (end == text || errno != 0)
			return false;
		text = end;
	}
	while (*text == ' ')
		text++;
	return *text == '\0';
}

/*
 * The input its plan items [input, feature, dtype, values, default] describe, placed in
 * the signature's order; NULL if they do not fit the model. Dtype "lookup:bytes" or
 * "lookup:int64": the feature's values are keys of a table (prepare_table), the model
 * reads their int64 ids.
 */
static NativeInput *
prepare_input(NativeModel *m, LiteRtHandle signature, char **items)
{
	LiteRtIndex index = find_name(signature, true, items[0], m->n_inputs);
	LiteRtHandle tensor = NULL;
	NativeInput *in;
	int32		element = LITERT_INT64;

	if (index == (LiteRtIndex) m->n_inputs || m->inputs[index].feature != NULL)
		return NULL;
	in = &m->inputs[index];
	in->feature = MemoryContextStrdup(m->context, items[1]);
	if (strcmp(items[2], "float32") == 0)
	{
		in->kind = PGML_FLOATS;
		element = LITERT_FLOAT32;
	}
	else if (strcmp(items[2], "int64") == 0 || strcmp(items[2], "lookup:int64") == 0)
		in->kind = PGML_INT64S;
	else if (strcmp(items[2], "lookup:bytes") == 0)
		in->kind = PGML_BYTES;
	in->n_keys = strncmp(items[2], "lookup:", 7) == 0 ? -1 : 0;	/* -1: its table follows */
	in->width = element_width(element);
	in->count = pg_strtoint32(items[3]);
	if (in->kind == 0 || in->count < 1
		|| lrt.GetSignatureInputTensorByIndex(signature, index, &tensor) != 0
		|| lrt.GetRankedTensorType(tensor, &in->type) != 0
		|| in->type.element_type != element || tensor_shape(&in->type) != in->count)
		return NULL;
	if (in->kind == PGML_BYTES)
		in->scratch = MemoryContextAlloc(m->context, sizeof(PgmlBytes) * in->count);
	if (items[4][0] != '\0')
	{
		in->fallback = MemoryContextAlloc(m->context, in->width * in->count);
		if (in->n_keys != 0 || !parse_default(items[4], in->kind, in->count, in->fallback))
			return NULL;
	}
	return in;
}

static int
compare_keys(const void *a, const void *b)
{
	const LookupEntry *x = a,
			   *y = b;

	if (x->bytes.data != NULL)
	{
		int			c = memcmp(x->bytes.data, y->bytes.data, Min(x->bytes.len, y->bytes.len));

		return c != 0 ? c : (x->bytes.len > y->bytes.len) - (x->bytes.len < y->bytes.len);
	}
	return (x->key > y->key) - (x->key < y->key);
}

/*
 * IN's lookup table from the plan items at *POS: [keys N, id of any other value, N keys,
 * their N ids]; *POS moves past them. False if they do not fit (or a key repeats).
 */
static bool
prepare_table(NativeModel *m, NativeInput *in, char **plan, int *pos, int n_plan)
{
	char	  **items = &plan[*pos];
	int			n,
				i;

	if (n_plan - *pos < 2)
		return false;
	n = pg_strtoint32(items[0]);
	if (n < 1 || n > (n_plan - *pos - 2) / 2
		|| !parse_default(items[1], PGML_INT64S, 1, &in->missing))
		return false;
	in->keys = MemoryContextAllocZero(m->context, sizeof(LookupEntry) * n);
	for (i = 0; i < n; i++)
	{
		LookupEntry *e = &in->keys[i];

		if (in->kind == PGML_BYTES)
		{
			e->bytes.data = (const uint8_t *) MemoryContextStrdup(m->context, items[2 + i]);
			e->bytes.len = strlen(items[2 + i]);
		}
		else if (!parse_default(items[2 + i], PGML_INT64S, 1, &e->key))
			return false;
		if (!parse_default(items[2 + n + i], PGML_INT64S, 1, &e->id))
			return false;
	}
	qsort(in->keys, n, sizeof(LookupEntry), compare_keys);
	for (i = 1; i < n; i++)
		if (compare_keys(&in->keys[i - 1], &in->keys[i]) == 0)
			return false;
	in->n_keys = n;
	*pos += 2 + 2 * n;
	return true;
}

int64
native_lookup(NativeInput *in, const void *v)
{
	LookupEntry probe = {{NULL, 0}, 0, 0};
	int			lo = 0,
				hi = in->n_keys;

	if (in->kind == PGML_BYTES)
	{
		probe.bytes = *(const PgmlBytes *) v;
		if (probe.bytes.data == NULL)
			probe.bytes.data = (const uint8_t *) "";	/* an empty value: memcmp of 0 bytes */
	}
	else
		memcpy(&probe.key, v, sizeof(int64));
	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = compare_keys(&probe, &in->keys[mid]);

		if (c == 0)
			return in->keys[mid].id;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return in->missing;
}

/* The classes table from N plan pairs (index, label); false if an index is not a number. */
static bool
prepare_classes(NativeModel *m, char **pairs, int n)
{
	int			i;

	m->n_classes = n;
	m->class_index = MemoryContextAlloc(m->context, sizeof(int) * Max(n, 1));
	m->class_label = MemoryContextAlloc(m->context, sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		m->class_index[i] = pg_strtoint32(pairs[2 * i]);
		if (m->class_index[i] < -1)
			return false;
		m->class_label[i] = MemoryContextStrdup(m->context, pairs[2 * i + 1]);
	}
	return true;
}

/*
 * XNNPACK's thread count, given to LiteRT as its CPU options: an "xnnpack" entry whose
 * payload is TOML (LiteRT's litert_cpu_options.cc parses it; the payload is freed by
 * LiteRT with the options).
 */
static LiteRtStatus
cpu_threads(LiteRtHandle options, int threads)
{
	LiteRtHandle cpu = NULL;
	char	   *toml = malloc(32);
	LiteRtStatus status;

	if (toml == NULL)
		return -1;
	snprintf(toml, 32, "num_threads = %d\n", threads);
	status = lrt.CreateOpaqueOptions("xnnpack", toml, free, &cpu);
	if (status != 0)
	{
		free(toml);
		return status;
	}
	return lrt.AddOpaqueOptions(options, cpu);
}

/* M's compiled model for FLATBUFFER and the index of SIGNATURE_KEY in it. */
static bool
compile(NativeModel *m, const char *flatbuffer, const char *signature_key,
		LiteRtHandle *signature)
{
	LiteRtHandle options = NULL;
	LiteRtIndex n_signatures = 0,
				i;
	LiteRtStatus status = 0;
	int			saved = quiet_stderr();

	if (lrt_environment == NULL)
		status = lrt.CreateEnvironment(0, NULL, &lrt_environment);
	if (status == 0)
		status = lrt.CreateModelFromFile(lrt_environment, flatbuffer, &m->model);
	if (status == 0)
		status = lrt.CreateOptions(&options);
	if (status == 0)
		status = lrt.SetOptionsHardwareAccelerators(options, LITERT_HW_CPU);
	if (status == 0 && pgml_threads > 1)
		status = cpu_threads(options, pgml_threads);
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
	release_file_pages(flatbuffer);
	if (lrt.GetNumModelSignatures(m->model, &n_signatures) != 0)
		return false;
	for (i = 0; i < n_signatures; i++)
	{
		const char *key = NULL;

		if (lrt.GetModelSignature(m->model, i, signature) == 0
			&& lrt.GetSignatureKey(*signature, &key) == 0
			&& key != NULL && strcmp(key, signature_key) == 0)
		{
			m->signature_index = i;
			return true;
		}
	}
	return false;
}

/* Builds M from its plan (see the top of this file); false if it cannot take this path. */
static bool
prepare(NativeModel *m, char **plan, int n_plan)
{
	LiteRtHandle signature = NULL,
				tensor = NULL;
	LiteRtIndex n_inputs = 0,
				n_outputs = 0;
	int			i,
				pos,
				planned,
				heads;

	if (n_plan < PLAN_HEAD || strcmp(plan[0], PLAN_FORMAT) != 0)
		return false;
	planned = pg_strtoint32(plan[8]);
	heads = pg_strtoint32(plan[9]);
	if (planned < 1 || planned > PGML_MAX_FEATURES || heads < 0 || heads > 64
		|| n_plan < PLAN_HEAD + PLAN_INPUT * planned + heads)
		return false;
	m->only_feature = strcmp(plan[7], "1") == 0 && planned == 1;
	m->default_top_k = pg_strtoint32(plan[6]);
	/* the flatbuffer: a file of the version's directory, never a path */
	if (strchr(plan[2], '/') != NULL || plan[2][0] == '.' || plan[2][0] == '\0'
		|| !open_litert(plan[1])
		|| !compile(m, psprintf("%s/%s/%s", pgml_models_root(), text_to_cstring(m->ref),
								plan[2]),
					plan[3], &signature))
		return false;

	/* Every input of the signature fed by the plan, once; outputs of known sizes. */
	if (lrt.GetNumSignatureInputs(signature, &n_inputs) != 0
		|| n_inputs != (LiteRtIndex) planned
		|| lrt.GetNumSignatureOutputs(signature, &n_outputs) != 0 || n_outputs < 1
		|| n_outputs > 64)
		return false;
	m->n_inputs = planned;
	m->inputs = MemoryContextAllocZero(m->context, sizeof(NativeInput) * planned);
	m->input_buffers = MemoryContextAllocZero(m->context, sizeof(LiteRtHandle) * planned);
	/* then the heads, the lookups' tables in the inputs' order, then the classes */
	pos = PLAN_HEAD + PLAN_INPUT * planned + heads;
	for (i = 0; i < planned; i++)
	{
		NativeInput *in = prepare_input(m, signature, &plan[PLAN_HEAD + PLAN_INPUT * i]);

		if (in == NULL || (in->n_keys < 0 && !prepare_table(m, in, plan, &pos, n_plan)))
			return false;
	}
	if ((n_plan - pos) % 2 != 0 || !prepare_classes(m, &plan[pos], (n_plan - pos) / 2))
		return false;
	if (m->packed && (planned != 1 || m->inputs[0].kind != PGML_FLOATS))
		return false;

	/* no default output (several heads, each call names one): -1 */
	m->default_output = plan[4][0] == '\0' ? -1 : find_name(signature, false, plan[4], n_outputs);
	if (m->default_output == (int) n_outputs)
		return false;
	m->n_outputs = n_outputs;
	m->outputs = MemoryContextAllocZero(m->context, sizeof(NativeOutput) * n_outputs);
	m->output_buffers = MemoryContextAllocZero(m->context, sizeof(LiteRtHandle) * n_outputs);
	for (i = 0; i < m->n_outputs; i++)
	{
		NativeOutput *out = &m->outputs[i];
		const char *name = NULL;

		if (lrt.GetSignatureOutputTensorByIndex(signature, i, &tensor) != 0
			|| lrt.GetRankedTensorType(tensor, &out->type) != 0
			|| (out->width = element_width(out->type.element_type)) == 0
			|| (out->count = tensor_shape(&out->type)) < 1)
			return false;
		/* a head the plan names, if it is float32 */
		if (lrt.GetSignatureOutputName(signature, i, &name) == 0 && name != NULL
			&& out->type.element_type == LITERT_FLOAT32)
			for (int h = 0; h < heads; h++)
				if (strcmp(name, plan[PLAN_HEAD + PLAN_INPUT * planned + h]) == 0)
					out->head = MemoryContextStrdup(m->context, name);
	}
	if (m->default_output >= 0
		&& m->outputs[m->default_output].type.element_type != LITERT_FLOAT32)
		return false;
	m->default_classes = -1;
	if (m->default_output < 0 && (m->default_top_k != 0 || plan[5][0] != '\0'))
		return false;
	if (plan[5][0] != '\0')
	{
		/* keys: one per score, integers */
		m->default_classes = find_name(signature, false, plan[5], n_outputs);
		if (m->default_classes == (int) n_outputs
			|| m->outputs[m->default_classes].type.element_type == LITERT_FLOAT32
			|| m->outputs[m->default_classes].count != m->outputs[m->default_output].count)
			return false;
	}
	native_select(m, NULL);
	if (m->top_k < 0 || m->top_k > m->n_scores)
		return false;
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
	return m->packed == packed && m->batch == batch && m->threads == pgml_threads
		&& VARSIZE_ANY_EXHDR(m->ref) == VARSIZE_ANY_EXHDR(ref)
		&& memcmp(VARDATA_ANY(m->ref), VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref)) == 0
		&& (m->signature == NULL ? signature == NULL
			: signature != NULL && strcmp(m->signature, signature) == 0);
}

static Oid
plan_function(void)
{
	static const Oid argtypes[] = {TEXTOID, BOOLOID, TEXTOID};

	return LookupFuncName(list_make2(makeString("pgml_internal"), makeString("native_plan")),
						  3, argtypes, false);
}

/*
 * The plan registration stored for this model version, input form and signature
 * (read as the extension's owner, as pgml_internal.model_ref reads the model tables);
 * an empty array if it has none (its rows go to PL/Python), NULL if the version has no
 * stored plans for its row as it is now (registered before plans were stored, or
 * changed since: its identity is not the one they were made for).
 */
static ArrayType *
stored_plan(text *ref, bool packed, const char *signature)
{
	Oid			argtypes[4] = {INT8OID, TEXTOID, BOOLOID, TEXTOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', signature ? ' ' : 'n'};
	char	   *id = text_to_cstring(ref);
	char	   *identity = strchr(id, '-');
	PgmlSavedUser saved;
	bool		isnull = true;
	Datum		plan = (Datum) 0;

	/* a ref is "<version id>-<identity>" (pgml_internal.model_ref) */
	if (identity == NULL || strspn(id, "0123456789") != (size_t) (identity - id))
		return NULL;
	*identity++ = '\0';
	args[0] = DirectFunctionCall1(int8in, CStringGetDatum(id));
	args[1] = CStringGetTextDatum(identity);
	args[2] = BoolGetDatum(!packed);
	args[3] = signature ? CStringGetTextDatum(signature) : (Datum) 0;
	saved = pgml_spi_as_owner(pgml_function_owner(plan_function()));
	if (SPI_execute_with_args("SELECT pgml_internal.stored_plan($1, $2, $3, $4)",
							  4, argtypes, args, nulls, true, 1) != SPI_OK_SELECT
		|| SPI_processed != 1)
		elog(ERROR, "pgml: stored plan lookup returned no row");
	plan = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		plan = SPI_datumTransfer(plan, false, -1);
	pgml_spi_as_owner_end(saved);
	return isnull ? NULL : DatumGetArrayTypeP(plan);
}

/* Asks PL/Python how this model version, input form and signature may be scored here. */
static ArrayType *
native_plan(text *ref, bool packed, const char *signature)
{
	Oid			plan_fn = plan_function();
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

/* Plan items as C strings; NULL if one is NULL. */
static char **
plan_items(ArrayType *plan, int *n)
{
	Datum	   *items;
	bool	   *nulls;
	char	  **strings;
	int			i;

	deconstruct_array(plan, TEXTOID, -1, false, TYPALIGN_INT, &items, &nulls, n);
	strings = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			return NULL;
		strings[i] = TextDatumGetCString(items[i]);
	}
	return strings;
}

NativeModel *
native_model(text *ref, bool packed, const char *signature, bool batch)
{
	NativeModel *m;
	ArrayType  *plan;
	char	  **items;
	int			n,
				i,
				held = 0,
				slot = -1;
	MemoryContext context;
	instr_time	started,
				elapsed;

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

	INSTR_TIME_SET_CURRENT(started);
	if ((plan = stored_plan(ref, packed, signature)) == NULL)
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
	m->version_id = pgml_ref_version(VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref));
	m->packed = packed;
	m->batch = batch;
	m->threads = pgml_threads;
	m->signature = signature ? MemoryContextStrdup(context, signature) : NULL;
	m->used = ++native_clock;
	native_models[slot] = m;
	if (plan != NULL && (items = plan_items(plan, &n)) != NULL)
		m->usable = prepare(m, items, n);
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, started);
	m->load_ms = INSTR_TIME_GET_MILLISEC(elapsed);
	pgml_stats_load_version(m->version_id, m->load_ms);
	return m;
}

int
native_clear(void)
{
	int			i,
				n = 0;

	for (i = 0; i < NATIVE_CACHE_SIZE; i++)
		if (native_models[i] != NULL)
		{
			forget(i);
			n++;
		}
	return n;
}

int
native_usable(void)
{
	int			i,
				usable = 0;

	for (i = 0; i < NATIVE_CACHE_SIZE; i++)
		if (native_models[i] != NULL && native_models[i]->usable)
			usable++;
	return usable;
}

int
native_list(NativeModel **out)
{
	int			i,
				n = 0;

	for (i = 0; i < NATIVE_CACHE_SIZE; i++)
		if (native_models[i] != NULL)
			out[n++] = native_models[i];
	return n;
}

bool
native_select(NativeModel *m, const char *output)
{
	int			i;

	m->scores_output = m->default_output;
	m->top_k = m->default_top_k;
	m->classes_output = m->default_classes;
	for (i = 0; output != NULL && i < m->n_outputs; i++)
		if (m->outputs[i].head != NULL && strcmp(m->outputs[i].head, output) == 0)
			break;
	if (output != NULL && i < m->n_outputs)
	{
		/* a head: its own scores, classes by position (as PL/Python's _indexed) */
		m->scores_output = i;
		m->top_k = 0;
		m->classes_output = -1;
	}
	else if (output != NULL)
		m->scores_output = -1;	/* not a head C scores: PL/Python */
	m->n_scores = m->scores_output < 0 ? 0 : m->outputs[m->scores_output].count;
	return m->scores_output >= 0;
}
