/*
 * native.c: the per-row scorer without PL/Python, for the common case.
 *
 * pgml.classify(model, input) and its siblings call pgml_internal.classify_native & co. For a
 * signature that runs on LiteRT with inputs C can fill (one float32 tensor of known
 * size, or the float and int64 features of an Example-parsing signature's plan, defaults
 * included), a row is parsed here (src/example.c for a tf.Example, or the float4[]
 * packed by pgml_internal.tensor), scored by LiteRT's C API (libLiteRt.so from the
 * ai-edge-litert wheel, opened with dlopen) and answered, with no Python on the way:
 * PL/Python's own call costs about as much as scoring a small model. Python still
 * decides once per backend and model: pgml_internal.native_plan says whether a (model
 * version, input form, signature) may take this path and how (native_model.c).
 *
 * This path never decides an error. Anything unusual (no plan, a bad Example, a feature
 * of the wrong kind or length, a missing one without a default, NaN or Infinity, a
 * LiteRT failure) hands the row to the PL/Python function of the same arguments
 * (pgml_internal.classify for classify_native, ...), which scores it or reports what is
 * wrong exactly as before. Tests compare both paths. pgml.classify_batch and
 * pgml.predict_class_batch work the same way, a chunk of inputs per LiteRT call; SET
 * pgml.native_scoring = off sends everything to PL/Python.
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
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "example.h"
#include "native.h"
#include "pgml_ext.h"

/* Rows answered here, and rows handed to PL/Python, in this backend (pgml.backend_status). */
static int64 native_rows = 0;
static int64 general_rows = 0;

/* -- One row ---------------------------------------------------------------------- */

/* False if any of N floats is NaN or Infinity: those go to the general path, which says so. */
static bool
finite_floats(const void *values, Size n)
{
	const uint32 *bits = (const uint32 *) values;
	uint32		special = 0;
	Size		i;

	/*
	 * NaN and Infinity have every exponent bit set, and only then does adding one to
	 * the exponent carry into the sign bit: an OR of sums, which the compiler
	 * vectorizes (see PG_CFLAGS), instead of a branch per value.
	 */
	for (i = 0; i < n; i++)
		special |= (bits[i] & 0x7f800000) + 0x00800000;
	return (special & 0x80000000) == 0;
}

/* IN's COUNT keys (PgmlBytes or int64s) read from a row, as the ids the model reads. */
static void
look_up(NativeInput *in, const void *keys, int64 *ids)
{
	int			j;

	for (j = 0; j < in->count; j++)
		ids[j] = native_lookup(in, in->kind == PGML_BYTES ? (const void *) &in->scratch[j]
							   : (const void *) &((const int64 *) keys)[j]);
}

/*
 * A serialized tf.Example into row R of M's inputs, each from its feature (else its
 * default; a looked-up feature as its ids), as pgml_ext.indb.signatures reads them; false when example.c declines
 * (upb in PL/Python decides those), a feature without a default is absent, or a float
 * is not finite.
 */
static bool
example_row(NativeModel *m, int r, bytea *data)
{
	PgmlFeature features[PGML_MAX_FEATURES];
	int			i;

	for (i = 0; i < m->n_inputs; i++)
	{
		NativeInput *in = &m->inputs[i];

		features[i].name = in->feature;
		features[i].kind = in->kind;
		features[i].count = in->count;
		features[i].values = in->kind == PGML_BYTES ? (void *) in->scratch
			: in->data + (Size) r * in->count * in->width;
	}
	if (!pgml_example_read((const uint8_t *) VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data),
						   features, m->n_inputs, m->only_feature))
		return false;
	for (i = 0; i < m->n_inputs; i++)
	{
		NativeInput *in = &m->inputs[i];

		if (!features[i].found)
		{
			if (in->fallback == NULL)
				return false;
			memcpy(features[i].values, in->fallback, in->width * in->count);
		}
		else if (in->kind == PGML_FLOATS && !finite_floats(features[i].values, in->count))
			return false;
		if (in->n_keys > 0)
			look_up(in, features[i].values,
					(int64 *) (in->data + (Size) r * in->count * in->width));
	}
	return true;
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
	if (count != m->inputs[0].count || *rows < 1
		|| size != header + sizeof(float) * (Size) count * *rows)
		return NULL;
	return p + header;
}

/* N rows of a packed float4[] into M's one input from row R on; false if not finite. */
static bool
copy_rows(NativeModel *m, int r, const void *values, int n)
{
	NativeInput *in = &m->inputs[0];
	Size		count = (Size) in->count * n;
	char	   *row = in->data + (Size) r * in->count * sizeof(float);

	memcpy(row, values, sizeof(float) * count);
	return finite_floats(row, count);
}

/* One input (an Example, or a packed float4[]) into row R of M's inputs. */
static bool
fill_row(NativeModel *m, int r, bytea *data)
{
	const char *values;
	int			rows;

	if (!m->packed)
		return example_row(m, r, data);
	values = packed_input(m, data, false, &rows);
	return values != NULL && copy_rows(m, r, values, 1);
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

/*
 * The class of row R's top score, as pgml_ext.indb.model.LoadedModel.top_classes finds
 * it: P, the position of the highest score, names it by the classes table, either by P
 * (registered labels, or constant class names) or by the key a classes output holds
 * at P (a vocabulary). *LABEL is NULL for the index as text. False for a key outside
 * the table, or scores that are not all finite: PL/Python says what is wrong.
 */
static bool
top_class(NativeModel *m, int r, int *index, const char **label)
{
	const float *scores = native_scores(m, r);
	int			p;
	int64		entry;

	/* NaN or infinite scores have no top class: PL/Python raises the ERROR */
	for (int i = 0; i < m->n_scores; i++)
		if (!isfinite(scores[i]))
			return false;
	p = top_index(scores, m->n_scores);
	entry = p;

	if (m->classes_output >= 0)
	{
		NativeOutput *keys = &m->outputs[m->classes_output];
		const char *at = keys->data + ((Size) r * keys->count + p) * keys->width;
		int32		key32;

		if (keys->width == sizeof(int64))
			memcpy(&entry, at, sizeof(int64));
		else
		{
			memcpy(&key32, at, sizeof(int32));
			entry = key32;
		}
		if (entry < 0 || entry >= m->n_classes)
			return false;
	}
	*index = p;
	*label = NULL;
	if (entry < m->n_classes)
	{
		if (m->class_index[entry] >= 0)
			*index = m->class_index[entry];
		*label = m->class_label[entry];
	}
	return true;
}

/* Values pgml.predict answers per row: the scores, or their top k. */
static int
answer_width(NativeModel *m)
{
	return m->top_k > 0 ? m->top_k : m->n_scores;
}

/*
 * Row R's scores as float4[]; with a top k, its K highest, sorted down (the
 * lower position first among equal ones, as tf.math.top_k and
 * pgml_ext.indb.signatures.top_k_outputs).
 */
static ArrayType *
scores_array(NativeModel *m, int r)
{
	const float *scores = native_scores(m, r);
	int			n = answer_width(m),
				i,
				j;
	Datum	   *values = palloc(sizeof(Datum) * n);
	bool	   *taken;

	if (m->top_k == 0)
	{
		for (i = 0; i < n; i++)
			values[i] = Float4GetDatum(scores[i]);
		return construct_array(values, n, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
	}
	/* selection: K passes over a handful of probabilities (all_written refused NaN) */
	taken = palloc0(sizeof(bool) * m->n_scores);
	for (i = 0; i < n; i++)
	{
		int			best = -1;

		for (j = 0; j < m->n_scores; j++)
			if (!taken[j] && (best < 0 || scores[j] > scores[best]))
				best = j;
		taken[best] = true;
		values[i] = Float4GetDatum(scores[best]);
	}
	return construct_array(values, n, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
}

static Datum
label_datum(const char *label, int index)
{
	return PointerGetDatum(cstring_to_text(label ? label : psprintf("%d", index)));
}

/*
 * A bit pattern LiteRT never writes for us unless the model computes it: the scores
 * (and keys) of the rows about to run are filled with it, and a row still holding it
 * afterwards was not written (an output without a batch dimension, or one LiteRT
 * sized at run time): its rows then go to PL/Python, which says what is wrong,
 * instead of answering from memory nobody wrote. Keys are filled with 0xa5 bytes, a
 * negative number that no vocabulary has.
 */
#define UNWRITTEN 0x7fa5a5a5u

static void
mark_unwritten(NativeModel *m, int rows)
{
	float	   *scores = native_scores(m, 0);
	uint32		bits = UNWRITTEN;

	for (Size i = 0; i < (Size) rows * m->n_scores; i++)
		memcpy(&scores[i], &bits, sizeof(bits));
	if (m->classes_output >= 0)
	{
		NativeOutput *keys = &m->outputs[m->classes_output];

		memset(keys->data, 0xa5, (Size) rows * keys->count * keys->width);
	}
}

static bool
all_written(NativeModel *m, int rows)
{
	const float *scores = native_scores(m, 0);

	for (Size i = 0; i < (Size) rows * m->n_scores; i++)
	{
		uint32		bits;

		memcpy(&bits, &scores[i], sizeof(bits));
		/* NaN among the probabilities of a top k: PL/Python orders them as numpy does */
		if (bits == UNWRITTEN || (m->top_k > 0 && isnan(scores[i])))
			return false;
	}
	return true;
}

/* Runs M over its first ROWS rows; false if LiteRT fails or leaves scores unwritten. */
static bool
run_rows(NativeModel *m, int rows)
{
	mark_unwritten(m, rows);
	return native_run(m) && all_written(m, rows);
}


/*
 * One call site's PL/Python twin (same arguments), looked up once per statement and
 * only when a row needs it: a backend whose rows all take C never loads PL/Python.
 */
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

/* The row(s) of this call go to the PL/Python twin NAME, counted as its ROWS rows. */
Datum
native_call_general(FunctionCallInfo fcinfo, const char *name, int rows)
{
	FmgrInfo   *general = general_function(fcinfo, name);
	LOCAL_FCINFO(fc, 4);
	MemoryContext caller = CurrentMemoryContext;
	Datum		result = (Datum) 0;
	int			i;

	general_rows += rows;
	InitFunctionCallInfoData(*fc, general, fcinfo->nargs, fcinfo->fncollation, NULL, NULL);
	for (i = 0; i < fcinfo->nargs; i++)
		fc->args[i] = fcinfo->args[i];
	PG_TRY();
	{
		result = FunctionCallInvoke(fc);
	}
	PG_CATCH();
	{
		ErrorData  *error;

		/* re-thrown as it is, less the traceback: nothing here goes on after it */
		MemoryContextSwitchTo(caller);
		error = CopyErrorData();
		FlushErrorState();
		error->context = pgml_without_traceback(error->context);
		ReThrowError(error);
	}
	PG_END_TRY();
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

/* The output a call names (argument 2, not NULL). */
static const char *
output_name(FunctionCallInfo fcinfo)
{
	return text_to_cstring(PG_GETARG_TEXT_PP(2));
}

/*
 * Whether M answers ANSWER for OUTPUT (NULL: the default) here; it is then selected.
 * One value per row has no top class: PL/Python says so.
 */
static bool
answers(NativeModel *m, Answer answer, const char *output)
{
	return m->usable && native_select(m, output) && (answer == SCORES || answer_width(m) >= 2);
}

/* ANSWER for row R of M's last run, into *OUT; false for a class C cannot name. */
static bool
answer_row(NativeModel *m, Answer answer, int r, Datum *out)
{
	int			index;
	const char *label;

	if (answer == SCORES)
		*out = PointerGetDatum(scores_array(m, r));
	else if (!top_class(m, r, &index, &label))
		return false;
	else if (answer == CLASS_INDEX)
		*out = Int32GetDatum(index);
	else
		*out = label_datum(label, index);
	native_rows++;
	return true;
}

/* pgml.stats: CALLS calls answered ROWS rows in C, from STARTED until now. */
static void
count_c_rows(NativeModel *m, int64 calls, int64 rows, instr_time started)
{
	instr_time	elapsed;

	if (!pgml_track_stats)
		return;
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, started);
	pgml_stats_count_version(m->version_id, calls, rows, 0, 0, INSTR_TIME_GET_MILLISEC(elapsed));
}

static Datum
score(FunctionCallInfo fcinfo, Answer answer, bool packed, const char *general_name)
{
	NativeModel *m;
	Datum		result;
	instr_time	started;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	check_ref(fcinfo);
	if (!pgml_native_scoring)
		return native_call_general(fcinfo, general_name, 1);
	if (pgml_track_stats)
		INSTR_TIME_SET_CURRENT(started);
	m = call_model(fcinfo, packed, false);
	/* the output argument (2): the default, or a head the plan names */
	if (!answers(m, answer, PG_ARGISNULL(2) ? NULL : output_name(fcinfo))
		|| !fill_row(m, 0, PG_GETARG_BYTEA_PP(1)) || !run_rows(m, 1)
		|| !answer_row(m, answer, 0, &result))
		return native_call_general(fcinfo, general_name, 1);	/* PL/Python counts it */
	count_c_rows(m, 1, 1, started);
	return result;
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
	instr_time	began;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	check_ref(fcinfo);
	if (!pgml_native_scoring)
		return native_call_general(fcinfo, general_name, 0);
	if (pgml_track_stats)
		INSTR_TIME_SET_CURRENT(began);
	m = call_model(fcinfo, packed, true);
	if (!answers(m, answer, PG_ARGISNULL(2) ? NULL : output_name(fcinfo)))
		return native_call_general(fcinfo, general_name, 0);
	if (packed)
		packed_data = packed_input(m, PG_GETARG_BYTEA_PP(1), true, &n);
	else
	{
		ArrayType  *array = PG_GETARG_ARRAYTYPE_P(1);

		if (ARR_NDIM(array) != 1)
			return native_call_general(fcinfo, general_name, 0);
		deconstruct_array(array, BYTEAOID, -1, false, TYPALIGN_INT, &inputs, &missing, &n);
	}
	if ((packed && packed_data == NULL) || n < 1)
		return native_call_general(fcinfo, general_name, 0);
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
		if (!native_resize(m, rows))
			return native_call_general(fcinfo, general_name, present);
		/* a float4[] batch has no NULLs: its chunk's rows are one run of floats */
		if (packed && !copy_rows(m, 0, packed_data + sizeof(float) * (Size) m->inputs[0].count * index[0],
								 rows))
			return native_call_general(fcinfo, general_name, present);
		for (r = 0; !packed && r < rows; r++)
			if (!fill_row(m, r, (bytea *) PG_DETOAST_DATUM_PACKED(inputs[index[r]])))
				return native_call_general(fcinfo, general_name, present);
		INSTR_TIME_SET_CURRENT(started);
		if (!run_rows(m, rows))
			return native_call_general(fcinfo, general_name, present);
		INSTR_TIME_SET_CURRENT(elapsed);
		INSTR_TIME_SUBTRACT(elapsed, started);
		chunk = next_chunk(chunk, INSTR_TIME_GET_MILLISEC(elapsed));
		for (r = 0; r < rows; r++)
		{
			int			top;
			const char *label;

			if (!top_class(m, r, &top, &label))
				return native_call_general(fcinfo, general_name, present);
			out[index[r]] = answer == CLASS_INDEX ? Int32GetDatum(top) : label_datum(label, top);
		}
	}
	native_rows += present;		/* counted once the whole batch is answered here */
	count_c_rows(m, 1, present, began);
	if (answer == CLASS_INDEX)
		PG_RETURN_ARRAYTYPE_P(construct_md_array(out, out_null, 1, &n, &lower, INT4OID,
												 sizeof(int32), true, TYPALIGN_INT));
	PG_RETURN_ARRAYTYPE_P(construct_md_array(out, out_null, 1, &n, &lower, TEXTOID, -1, false,
											 TYPALIGN_INT));
}

/*
 * One call of a per-row function over a block of N rows (block_scan.c): REF, OUTPUT
 * and SIGNATURE as the call's arguments (the same for every row of the block), INPUTS
 * the rows' inputs (NULL: SQL NULL). Rows answered here get DONE[r] and their answer in
 * OUT[r] / OUT_NULL[r], from one LiteRT run; the others are left to the function
 * itself, row by row at their turn (PL/Python answers or raises their ERROR).
 */
void
native_score_block(Answer answer, bool packed, text *ref, text *output, text *signature,
				   bytea **inputs, int n, Datum *out, bool *out_null, bool *done)
{
	NativeModel *m;
	int		   *index;
	int			rows = 0,
				answered = 0,
				i;
	instr_time	started;

	memset(done, 0, sizeof(bool) * n);
	if (pgml_track_stats)
		INSTR_TIME_SET_CURRENT(started);
	if (!pgml_native_scoring || ref == NULL
		|| !pgml_ref_issued(VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref)))
		return;
	m = native_model(ref, packed, signature ? text_to_cstring(signature) : NULL, true);
	if (!answers(m, answer, output ? text_to_cstring(output) : NULL) || !native_resize(m, n))
		return;
	index = palloc(sizeof(int) * n);
	for (i = 0; i < n; i++)
	{
		if (inputs[i] == NULL)
		{
			out_null[i] = done[i] = true;	/* NULL in, NULL out */
			out[i] = (Datum) 0;
		}
		else if (fill_row(m, rows, inputs[i]))
			index[rows++] = i;
	}
	if (rows == 0 || !run_rows(m, rows))
		return;
	for (i = 0; i < rows; i++)
	{
		out_null[index[i]] = false;
		done[index[i]] = answer_row(m, answer, i, &out[index[i]]);
		answered += done[index[i]];
	}
	/* each row is a call of the per-row function; the others are counted at their turn */
	count_c_rows(m, answered, answered, started);
}

/* Each SQL function: its entry (score or score_batch), answer, input form and twin. */
#define NATIVE_FUNCTION(c_name, entry, answer, packed, general) \
	PG_FUNCTION_INFO_V1(c_name); \
	Datum c_name(PG_FUNCTION_ARGS) { return entry(fcinfo, answer, packed, general); }

/* The per-row functions: C name, answer, input form, PL/Python twin. */
#define PER_ROW_FUNCTIONS(X) \
	X(pgml_predict_native, SCORES, false, "predict") \
	X(pgml_predict_class_native, CLASS_INDEX, false, "predict_class") \
	X(pgml_classify_native, CLASS_LABEL, false, "classify") \
	X(pgml_predict_tensor_native, SCORES, true, "predict_tensor") \
	X(pgml_predict_class_tensor_native, CLASS_INDEX, true, "predict_class_tensor") \
	X(pgml_classify_tensor_native, CLASS_LABEL, true, "classify_tensor")

#define PER_ROW_FUNCTION(c_name, answer, packed, general) \
	NATIVE_FUNCTION(c_name, score, answer, packed, general)
PER_ROW_FUNCTIONS(PER_ROW_FUNCTION)

/* The same, for block_scan.c, which runs them over blocks of rows. */
#define PER_ROW_ENTRY(c_name, answer, packed, general) {c_name, answer, packed},
const NativeEntry native_entries[] = {
	PER_ROW_FUNCTIONS(PER_ROW_ENTRY)
	{NULL, SCORES, false}
};
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
	PG_RETURN_INT32(native_clear());
}

PG_FUNCTION_INFO_V1(pgml_native_status);

/* {"native_models": models ready here, "native_rows", "general_rows", "litert_c_loaded"} */
Datum
pgml_native_status(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("{\"native_models\": %d, \"native_rows\": "
											  INT64_FORMAT ", \"general_rows\": " INT64_FORMAT
											  ", \"litert_c_loaded\": %s}",
											  native_usable(), native_rows, general_rows,
											  lrt_library ? "true" : "false")));
}

PG_FUNCTION_INFO_V1(pgml_native_models);

/* pgml_internal.native_models(): (ref, usable, load_ms) per model made ready here. */
Datum
pgml_native_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	NativeModel *models[PGML_MAX_CACHED_MODELS];
	int			n = native_list(models),
				i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = PointerGetDatum(models[i]->ref);
		values[1] = BoolGetDatum(models[i]->usable);
		values[2] = Float8GetDatum(models[i]->load_ms);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
