/*
 * row_example.c: named values as the tf.Example a model reads, built in C: a table row
 * by column name (pgml.example(model, row), and pgml.predict/classify/predict_class(model,
 * row)), and a jsonb object by key (the same functions' jsonb forms; see the end).
 *
 * Each column whose name is one of the features the model parses becomes that feature,
 * typed as the model's plan reads it (native_model.c): floats from real, double
 * precision, numeric, integers and booleans; int64s from integers and booleans; bytes
 * from text and bytea; and arrays of them, in order. A NULL column is left out (the
 * feature's default applies); a feature with no default and no column is an ERROR
 * naming it. A model with no C plan
 * (TensorFlow serves it) takes every column, typed by the column's own type. The
 * Example then goes through the bytea path, which checks it as any other: a column
 * missing or of the wrong shape gets that path's ERROR, naming the feature, which is the
 * column's name. A column of a type that cannot feed a feature is an ERROR here.
 *
 * The encoding is protobuf's: Example{features: Features{feature: map<string, Feature>}},
 * Feature{bytes_list = 1 | float_list = 2 | int64_list = 3}, each list one repeated
 * field 1 (packed for numbers). tests/test_row_input.py checks every answer against
 * pgml.example's jsonb path and TensorFlow's parse.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "example.h"
#include "native.h"
#include "pgml_ext.h"

static void
put_varint(StringInfo out, uint64 value)
{
	do
	{
		uint8		byte = value & 0x7F;

		value >>= 7;
		appendStringInfoChar(out, (char) (value ? byte | 0x80 : byte));
	} while (value);
}

/* Field FIELD (wire type 2: length-delimited) holding DATA. */
static void
put_bytes_field(StringInfo out, int field, const char *data, Size len)
{
	put_varint(out, ((uint64) field << 3) | 2);
	put_varint(out, len);
	appendBinaryStringInfo(out, data, len);
}

/* The element type of an array type, or the type itself. */
static Oid
base_type(Oid type, bool *is_array)
{
	Oid			element = get_element_type(getBaseType(type));

	*is_array = OidIsValid(element);
	/* a domain (over an array, or of an array's elements) stores its base type */
	return *is_array ? getBaseType(element) : getBaseType(type);
}

/* The kind a column of TYPE feeds when no plan says (a model TensorFlow serves). */
static int
kind_of_type(Oid type)
{
	switch (type)
	{
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return PGML_FLOATS;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case BOOLOID:
			return PGML_INT64S;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case BYTEAOID:
			return PGML_BYTES;
		default:
			return 0;
	}
}

static void
wrong_type(const char *column, Oid type, int kind)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("pgml: column \"%s\" is %s, and the model reads feature \"%s\" as %s",
					column, format_type_be(type), column,
					kind == PGML_FLOATS ? "floats" : kind == PGML_INT64S ? "integers" : "bytes"),
			 errhint(kind == PGML_BYTES ? "Give it as text or bytea."
					 : kind == PGML_FLOATS ? "Give it as numbers (real, double precision, "
					 "numeric, integers or booleans)."
					 : "Give it as integers or booleans; cast a number column to bigint.")));
}

/* One value of TYPE as a float, or an ERROR for a type floats cannot come from. */
static float4
as_float(Datum value, Oid type, const char *column)
{
	switch (type)
	{
		case FLOAT4OID:
			return DatumGetFloat4(value);
		case FLOAT8OID:
			{
				float8		d = DatumGetFloat8(value);

				/* beyond float's range: infinity (a C cast would be undefined) */
				if (isfinite(d) && fabs(d) > FLT_MAX)
					return d > 0 ? INFINITY : -INFINITY;
				return (float4) d;
			}
		case NUMERICOID:
			return DatumGetFloat4(DirectFunctionCall1(numeric_float4, value));
		case INT2OID:
			return (float4) DatumGetInt16(value);
		case INT4OID:
			return (float4) DatumGetInt32(value);
		case INT8OID:
			return (float4) DatumGetInt64(value);
		case BOOLOID:
			return DatumGetBool(value) ? 1.0f : 0.0f;
	}
	wrong_type(column, type, PGML_FLOATS);
	return 0;
}

/* One value of TYPE as an int64, or an ERROR (floats are not taken: no silent rounding). */
static int64
as_int64(Datum value, Oid type, const char *column)
{
	switch (type)
	{
		case INT2OID:
			return DatumGetInt16(value);
		case INT4OID:
			return DatumGetInt32(value);
		case INT8OID:
			return DatumGetInt64(value);
		case BOOLOID:
			return DatumGetBool(value) ? 1 : 0;
	}
	wrong_type(column, type, PGML_INT64S);
	return 0;
}

/* A map entry (key = 1, value = 2) of Features.feature: NAME's FEATURE, into FEATURES. */
static void
put_map_entry(StringInfo features, const char *name, StringInfo feature)
{
	StringInfoData entry;

	initStringInfo(&entry);
	put_bytes_field(&entry, 1, name, strlen(name));
	put_bytes_field(&entry, 2, feature->data, feature->len);
	put_bytes_field(features, 1, entry.data, entry.len);
}

/* The serialized Example{features: FEATURES} as a bytea. */
static bytea *
example_of(StringInfo features)
{
	StringInfoData example;
	bytea	   *result;

	initStringInfo(&example);
	put_bytes_field(&example, 1, features->data, features->len);	/* Example.features */
	result = (bytea *) palloc(VARHDRSZ + example.len);
	SET_VARSIZE(result, VARHDRSZ + example.len);
	memcpy(VARDATA(result), example.data, example.len);
	return result;
}

/*
 * FEATURE's list of KIND: LIST's bytes entries, or (numbers) LEN bytes of PACKED values as
 * the list's one packed field. Feature: bytes_list = 1, float_list = 2, int64_list = 3.
 */
static void
put_list(StringInfo feature, int kind, StringInfo list, const char *packed, Size len)
{
	if (kind != PGML_BYTES)
		put_bytes_field(list, 1, packed, len);
	put_bytes_field(feature, kind == PGML_BYTES ? 1 : kind == PGML_FLOATS ? 2 : 3,
					list->data, list->len);
}

/* The list of one feature (KIND) holding VALUES (N of them, of TYPE), into FEATURE. */
static void
put_feature(StringInfo feature, int kind, Datum *values, int n, Oid type, const char *column)
{
	StringInfoData list;
	StringInfoData packed;

	initStringInfo(&list);
	initStringInfo(&packed);
	if (kind != PGML_BYTES)
		enlargeStringInfo(&packed,	/* floats; int64s at least (bounded: n of bools) */
						  (int) Min((Size) n * sizeof(float4), MaxAllocSize / 2));
	for (int i = 0; i < n; i++)
	{
		if (kind == PGML_FLOATS)
		{
			float4		f = as_float(values[i], type, column);

			appendBinaryStringInfo(&packed, (char *) &f, sizeof(f));	/* little-endian */
		}
		else if (kind == PGML_INT64S)
			put_varint(&packed, (uint64) as_int64(values[i], type, column));
		else if (kind_of_type(type) == PGML_BYTES)
		{
			struct varlena *v = PG_DETOAST_DATUM_PACKED(values[i]);

			put_bytes_field(&list, 1, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
		}
		else
			wrong_type(column, type, kind);
	}
	put_list(feature, kind, &list, packed.data, packed.len);
}

/* The input of M's plan that feature NAME feeds, or -1 if the plan does not read it. */
static int
planned_input(NativeModel *m, const char *name)
{
	for (int i = 0; m->usable && i < m->n_inputs; i++)
		if (m->inputs[i].feature != NULL && strcmp(m->inputs[i].feature, name) == 0)
			return i;
	return -1;
}

PG_FUNCTION_INFO_V1(pgml_row_example);

/* pgml_internal.row_example(ref text, input record, signature text): see above. */
Datum
pgml_row_example(PG_FUNCTION_ARGS)
{
	text	   *ref;
	HeapTupleHeader row;
	TupleDesc	desc;
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;
	bool	   *fed;
	NativeModel *m;
	StringInfoData features;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	ref = PG_GETARG_TEXT_PP(0);
	pgml_check_ref(VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref));
	m = native_model(ref, false, PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
					 false);
	row = PG_GETARG_HEAPTUPLEHEADER(1);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row), HeapTupleHeaderGetTypMod(row));
	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	fed = palloc0(sizeof(bool) * Max(m->n_inputs, 1));
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(&tuple, desc, values, nulls);

	initStringInfo(&features);
	for (int c = 0; c < desc->natts; c++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, c);
		const char *name = NameStr(attr->attname);
		bool		is_array;
		Oid			type = base_type(attr->atttypid, &is_array);
		int			input = planned_input(m, name);
		int			kind = m->usable ? (input >= 0 ? m->inputs[input].kind : 0)
			: kind_of_type(type);	/* TensorFlow serves it: by the column's type */
		StringInfoData feature;
		Datum	   *items = &values[c];
		bool	   *item_nulls = NULL;
		int			n = 1;

		if (attr->attisdropped || nulls[c] || kind == 0)
			continue;			/* not a feature (or NULL: its default) */
		if (input >= 0)
			fed[input] = true;
		initStringInfo(&feature);
		if (is_array)
		{
			ArrayType  *array = DatumGetArrayTypeP(values[c]);
			int16		typlen;
			bool		typbyval;
			char		typalign;

#ifndef WORDS_BIGENDIAN
			if (kind == PGML_FLOATS && type == FLOAT4OID && !ARR_HASNULL(array))
			{
				/* a float4[] is the float list itself: the same little-endian floats */
				StringInfoData list;

				initStringInfo(&list);
				put_list(&feature, PGML_FLOATS, &list, ARR_DATA_PTR(array),
						 (Size) ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array))
						 * sizeof(float4));
				put_map_entry(&features, name, &feature);
				continue;
			}
#endif
			get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
			deconstruct_array(array, ARR_ELEMTYPE(array), typlen, typbyval, typalign, &items,
							  &item_nulls, &n);
			for (int i = 0; i < n; i++)
				if (item_nulls[i])
					ereport(ERROR,
							(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							 errmsg("pgml: column \"%s\" has a NULL element", name),
							 errhint("A feature's values cannot be NULL; a NULL column is "
									 "left out (its default applies).")));
		}
		put_feature(&feature, kind, items, n, type, name);
		put_map_entry(&features, name, &feature);
	}
	ReleaseTupleDesc(desc);
	/* a feature the plan reads with no default needs its column */
	for (int i = 0; m->usable && i < m->n_inputs; i++)
		if (m->inputs[i].feature != NULL && m->inputs[i].fallback == NULL
			&& !fed[i])
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("pgml: the row has no value for feature \"%s\", which the model "
							"reads and has no default for", m->inputs[i].feature),
					 errhint("Give the row a column of that name (SELECT ... AS %s), not "
							 "NULL; a ROW(...) needs a composite type to name its columns.",
							 m->inputs[i].feature)));

	PG_RETURN_BYTEA_P(example_of(&features));
}


/*
 * A jsonb object's values by key (pgml.example(model, jsonb): to_jsonb(t), named values),
 * the same way for a model with a C plan; the decision of what fits is PL/Python's
 * (signatures.example_from_document), which this follows value for value: JSON numbers
 * as Python reads them (a number written with a decimal point is a float, else an
 * exact integer), strings as their UTF-8 bytes. Anything else (not an object, a key
 * missing or null with no default, a value of another type, a nested or empty list, an
 * integer beyond int64 or a float beyond float's range, a server not in UTF-8, no plan)
 * goes to the PL/Python twin, which builds it or says what is wrong. Tests compare the
 * two on any document (make fuzz).
 */

/* A JSON number as PL/Python reads jsonb's text of it: its digits, and whether a float. */
static char *
number_text(JsonbValue *v, bool *is_float)
{
	char	   *digits = DatumGetCString(DirectFunctionCall1(numeric_out,
															 NumericGetDatum(v->val.numeric)));

	*is_float = strpbrk(digits, ".eE") != NULL;
	return digits;
}

/* One JSON scalar V as feature values of KIND, into PACKED or LIST; false: not here. */
static bool
put_json_value(JsonbValue *v, int kind, StringInfo packed, StringInfo list)
{
	bool		is_float;
	char	   *digits;
	char	   *end;
	double		d;

	if (kind == PGML_BYTES)
	{
		if (v->type != jbvString)
			return false;
		put_bytes_field(list, 1, v->val.string.val, v->val.string.len);
		return true;
	}
	if (v->type != jbvNumeric)
		return false;
	digits = number_text(v, &is_float);
	errno = 0;
	if (kind == PGML_INT64S && !is_float)
	{
		long long	i = strtoll(digits, &end, 10);

		if (*end != '\0' || errno != 0)
			return false;
		put_varint(packed, (uint64) (int64) i);
		return true;
	}
	/* Python: float(text), correctly rounded, as strtod */
	d = strtod(digits, &end);
	if (*end != '\0' || errno != 0)
		return false;
	if (kind == PGML_FLOATS)
	{
		float4		f;

		/* then float32 (also correctly rounded); beyond its range, PL/Python's */
		if (!(fabs(d) <= FLT_MAX))
			return false;
		f = (float4) d;
		appendBinaryStringInfo(packed, (char *) &f, sizeof(f));	/* little-endian */
		return true;
	}
	/* Python: a float that is a whole number within int64 is that integer */
	if (d != floor(d) || d < -0x1p63 || d >= 0x1p63)
		return false;
	put_varint(packed, (uint64) (int64) d);
	return true;
}

/* The JSON value V (a scalar, or a flat non-empty list of them) as a Feature of KIND. */
static bool
put_json_feature(JsonbValue *v, int kind, StringInfo feature)
{
	StringInfoData list;
	StringInfoData packed;

	initStringInfo(&list);
	initStringInfo(&packed);
	if (v->type == jbvBinary)
	{
		JsonbIterator *it;
		JsonbValue	item;
		JsonbIteratorToken token;

		if (!JsonContainerIsArray(v->val.binary.data) || JsonContainerSize(v->val.binary.data) == 0)
			return false;
		it = JsonbIteratorInit(v->val.binary.data);
		while ((token = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
			if (token == WJB_ELEM && !put_json_value(&item, kind, &packed, &list))
				return false;	/* a nested value is jbvBinary: not a scalar */
	}
	else if (!put_json_value(v, kind, &packed, &list))
		return false;
	put_list(feature, kind, &list, packed.data, packed.len);
	return true;
}

/* Whether input I of M reads a feature an earlier input reads too (one entry each). */
static bool
feature_seen(NativeModel *m, int i)
{
	for (int j = 0; j < i; j++)
		if (m->inputs[j].feature != NULL && strcmp(m->inputs[j].feature, m->inputs[i].feature) == 0)
			return true;
	return false;
}

/* The Example of DOCUMENT's values for M's plan, or NULL: PL/Python's to build or refuse. */
static bytea *
jsonb_example(NativeModel *m, Jsonb *document)
{
	StringInfoData features;

	if (!m->usable || !JB_ROOT_IS_OBJECT(document) || GetDatabaseEncoding() != PG_UTF8)
		return NULL;
	initStringInfo(&features);
	for (int i = 0; i < m->n_inputs; i++)
	{
		NativeInput *in = &m->inputs[i];
		JsonbValue	found;
		JsonbValue *v;
		StringInfoData feature;

		if (in->feature == NULL || feature_seen(m, i))
			continue;
		v = getKeyJsonValueFromContainer(&document->root, in->feature, strlen(in->feature),
										 &found);
		if (v == NULL || v->type == jbvNull)
		{
			if (in->fallback == NULL)
				return NULL;	/* no default: PL/Python says which feature */
			continue;
		}
		initStringInfo(&feature);
		if (!put_json_feature(v, in->kind, &feature))
			return NULL;
		put_map_entry(&features, in->feature, &feature);
	}
	return example_of(&features);
}

PG_FUNCTION_INFO_V1(pgml_jsonb_example);

/* pgml_internal.example_native(ref text, features jsonb, signature text): see above. */
Datum
pgml_jsonb_example(PG_FUNCTION_ARGS)
{
	text	   *ref;
	bytea	   *built;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	ref = PG_GETARG_TEXT_PP(0);
	pgml_check_ref(VARDATA_ANY(ref), VARSIZE_ANY_EXHDR(ref));
	if (!pgml_native_scoring)
		return native_call_general(fcinfo, "example", 0);
	built = jsonb_example(native_model(ref, false,
									   PG_ARGISNULL(2) ? NULL
									   : text_to_cstring(PG_GETARG_TEXT_PP(2)), false),
						  PG_GETARG_JSONB_P(1));
	if (built == NULL)
		return native_call_general(fcinfo, "example", 0);
	PG_RETURN_BYTEA_P(built);
}
