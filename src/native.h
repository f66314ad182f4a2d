/*
 * native.h: a model version made ready for the C scorer (native_model.c), which
 * native.c's SQL functions fill with rows and run.
 */
#ifndef PGML_NATIVE_H
#define PGML_NATIVE_H

#include "postgres.h"

#include "fmgr.h"

#include "example.h"
#include "litert.h"

/* What a scoring function answers. */
typedef enum
{
	SCORES,						/* float4[]: pgml.predict */
	CLASS_INDEX,				/* int: pgml.predict_class */
	CLASS_LABEL					/* text: pgml.classify */
} Answer;

/* A per-row scoring function (native.c): its C entry, answer and input form. */
typedef struct NativeEntry
{
	PGFunction	fn;
	Answer		answer;
	bool		packed;			/* a float4[] packed by pgml_internal.tensor */
} NativeEntry;

/* The per-row functions, ended by a NULL fn. */
extern const NativeEntry native_entries[];

/* block_scan.c: the per-row function NODE calls, if it is a call of one. */
extern const NativeEntry *pgml_scoring_call(Node *node);

/* One key of a lookup table: bytes (a string key) or an int64, and the id it maps to. */
typedef struct LookupEntry
{
	PgmlBytes	bytes;
	int64		key;
	int64		id;
} LookupEntry;

/* One input of the LiteRT signature: where its values come from and where they go. */
typedef struct NativeInput
{
	char	   *feature;		/* the tf.Example feature that feeds it */
	int			kind;			/* PGML_FLOATS or PGML_INT64S (example.h) */
	int			count;			/* values per row */
	Size		width;			/* bytes per value */
	void	   *fallback;		/* COUNT values for an Example without the feature, or NULL */
	/* a lookup (StringLookup/IntegerLookup, cut off by cutting.py): the feature's values
	 * are keys (KIND bytes or int64), the model reads their ids */
	int			n_keys;			/* 0: no lookup */
	LookupEntry *keys;			/* sorted by key */
	int64		missing;		/* the id of any other value */
	PgmlBytes  *scratch;		/* COUNT values of a row's bytes feature */
	TensorType	type;
	LiteRtHandle buffer;
	char	   *data;			/* rows of COUNT values, LiteRT reads them */
} NativeInput;

typedef struct NativeOutput
{
	char	   *head;			/* its name, if a call may name it (a float32 head) */
	TensorType	type;
	int			count;			/* values per row */
	Size		width;			/* bytes per value */
	LiteRtHandle buffer;
	char	   *data;			/* rows of COUNT values, LiteRT writes them */
} NativeOutput;

typedef struct NativeModel
{
	/* the key: model version (its ref), input form, requested signature, use, threads */
	text	   *ref;
	int64		version_id;		/* the version the ref names (pgml.stats counts by it) */
	bool		packed;			/* float4[] packed by pgml_internal.tensor, else tf.Example */
	char	   *signature;		/* NULL: the model's default */
	bool		batch;			/* for the batch forms: resized to their chunks */
	int			threads;		/* pgml.threads it was compiled with */
	uint64		used;			/* for recycling the least recently used */
	double		load_ms;		/* reading its plan and compiling it */

	bool		usable;			/* false: every row takes the PL/Python path */
	LiteRtHandle model;
	LiteRtHandle compiled;
	LiteRtIndex signature_index;
	int			rows;			/* rows the buffers hold (the model's batch size) */
	int			n_inputs;		/* in the signature's order */
	NativeInput *inputs;
	LiteRtHandle *input_buffers;
	bool		only_feature;	/* one input: an Example's only feature feeds it too */
	int			n_outputs;
	NativeOutput *outputs;
	LiteRtHandle *output_buffers;
	/* the default answer: scores, top k, classes output (see below) */
	int			default_output;
	int			default_top_k;
	int			default_classes;
	/* this call's answer (native_select): the default, or a head a call names */
	int			scores_output;	/* the output scored: float32 */
	int			n_scores;		/* its values per row */
	int			top_k;			/* > 0: pgml.predict answers its K highest, sorted */
	/* the class of a row's top score (position P): by P, or by a key output's value at P */
	int			classes_output;	/* an int output of keys, or -1: by position */
	int			n_classes;		/* entries: positions (or keys) 0..n_classes-1 */
	int		   *class_index;	/* -1: the position itself */
	char	  **class_label;
	MemoryContext context;
} NativeModel;

/*
 * This call goes to its PL/Python twin pgml_internal.NAME (same arguments), which answers
 * it or reports what is wrong; counted as ROWS rows handed to PL/Python.
 */
extern Datum native_call_general(FunctionCallInfo fcinfo, const char *name, int rows);

/* The model for this key, made ready on first use (asking PL/Python for its plan). */
extern NativeModel *native_model(text *ref, bool packed, const char *signature, bool batch);

/* The id IN's lookup table gives V (a PgmlBytes or an int64, by IN's kind). */
extern int64 native_lookup(NativeInput *in, const void *v);

/* One call over a block of rows (block_scan.c); see native.c. */
extern void native_score_block(Answer answer, bool packed, text *ref, text *output,
							   text *signature, bytea **inputs, int n, Datum *out,
							   bool *out_null, bool *done);

/*
 * The answer this call scores: the default (OUTPUT NULL) or the head OUTPUT names;
 * false if C does not score that output (PL/Python does, or says what is wrong).
 */
extern bool native_select(NativeModel *m, const char *output);

/* Buffers for ROWS rows; false (and M unusable) if LiteRT refuses. */
extern bool native_resize(NativeModel *m, int rows);
extern bool native_run(NativeModel *m);
/* Forgets every model ready here (pgml.clear_cache); how many there were. */
extern int	native_clear(void);
/* Models ready here that take rows in C. */
extern int	native_usable(void);
/* The models made ready here (usable or not), into OUT (room for PGML_MAX_CACHED_MODELS). */
extern int	native_list(NativeModel **out);

/* M's scores for row R. */
static inline float *
native_scores(NativeModel *m, int r)
{
	return (float *) m->outputs[m->scores_output].data + (Size) r * m->n_scores;
}

#endif
