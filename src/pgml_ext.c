/*
 * pgml_ext.c: resolving models to this server's files, and the small C helpers of the
 * SQL functions (pgml_internal.tensor, pgml_internal.only_value).
 *
 * pgml_internal.model_ref(model text) turns a model reference ('mnist', 'mnist@3') into
 * the name of the directory on this server (under pgml_models_root()) that holds that
 * version's files (model.json, the SavedModel archive, the LiteRT flatbuffers), writing
 * them from the pgml tables the first time any backend asks. The PL/Python scoring
 * functions then load models from files alone.
 *
 * Why C: PL/Python runs every SPI query in a subtransaction, which PostgreSQL forbids
 * in parallel mode, so a PL/Python function cannot read the models table inside a
 * parallel query. A C function can (plain SPI reads are allowed in parallel workers),
 * and it can remember its answer in fn_extra for the rest of the statement, so the
 * model is resolved once per statement and call site, not once per row, in the leader
 * and in every worker alike, all under the statement's snapshot.
 *
 * Trust: the model tables are read as the extension's owner (the owner of this
 * function), so scorers need no privilege on them nor on the functions that read them;
 * the directory's name is the SHA-256 of model.json, which holds every blob's checksum,
 * the labels and the options, so a directory never serves a different row; one process
 * writes a version at a time (flock), others wait; every file is checked as it is
 * written, flatbuffers by LiteRT's verifier (pgml_internal.check_model_files) before the
 * directory is renamed into place. A reference is only good in the statement whose
 * pgml_internal.model_ref handed it out (pgml_check_ref): the internal scoring functions take
 * no path of anyone's making, and a deleted version cannot be scored.
 *
 * pgml_internal.tensor(input float4[], model text) hands a float4[] to PL/Python as one bytea
 * (ndim, dims, the floats): PL/Python would otherwise build a Python float object per
 * element, which costs more than scoring a small model.
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "utils/array.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "catalog/pg_proc.h"
#include "nodes/value.h"
#include "parser/parse_coerce.h"
#include "parser/parse_func.h"
#include "utils/timestamp.h"

#include "pgml_ext.h"

/* A statement usually names one model; a few more are remembered, then recycled. */
#define REF_CACHE_SIZE 8

typedef struct RefCache
{
	TimestampTz statement;		/* the top-level statement these answers are for */
	Oid			owner;			/* who reads the model tables */
	int			next;
	char	   *model[REF_CACHE_SIZE];
	char	   *ref[REF_CACHE_SIZE];
} RefCache;

static char *
text_column(HeapTuple tuple, TupleDesc desc, int column)
{
	char	   *value = SPI_getvalue(tuple, desc, column);

	if (value == NULL)
		elog(ERROR, "pgml: unexpected NULL in column %d of a model lookup", column);
	return value;
}

/* Only plain names from pgml_internal.model_files: never a path of anyone's making. */
static void
check_file_name(const char *name)
{
	const char *c;

	if (name[0] == '\0' || name[0] == '.')
		elog(ERROR, "pgml: bad model file name \"%s\"", name);
	for (c = name; *c; c++)
		if (!(isalnum((unsigned char) *c) || *c == '.' || *c == '-' || *c == '_'))
			elog(ERROR, "pgml: bad model file name \"%s\"", name);
}

/* A model file being written, and the SHA-256 its contents must have. */
typedef struct ModelFile
{
	char	   *path;
	char	   *checksum;		/* hex, or NULL: not checked (model.json) */
	char	   *what;			/* "model 'x' v3 (LiteRT signature s)", for messages */
	pg_cryptohash_ctx *hash;
} ModelFile;

static void
append_to_file(ModelFile *file, bytea *data)
{
	int			fd = OpenTransientFile(file->path, O_WRONLY | O_CREAT | O_APPEND | PG_BINARY);
	const char *bytes = VARDATA_ANY(data);
	Size		left = VARSIZE_ANY_EXHDR(data);

	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pgml: could not open \"%s\": %m", file->path)));
	if (file->hash && pg_cryptohash_update(file->hash, (const uint8 *) bytes, left) < 0)
		elog(ERROR, "pgml: sha256 failed");
	while (left > 0)
	{
		ssize_t		written = write(fd, bytes, left);

		if (written < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("pgml: could not write \"%s\": %m", file->path)));
		}
		bytes += written;
		left -= written;
	}
	if (pg_fsync(fd) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pgml: could not fsync \"%s\": %m", file->path)));
	CloseTransientFile(fd);
}

/*
 * A file is complete: its contents must match the checksum stored at registration
 * (the same check, and the same message, as for a blob read any other way). Checked
 * once here, when the server's copy is made, not on every load.
 */
static void
close_file(ModelFile *file, const char *tmp)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char		hex[PG_SHA256_DIGEST_STRING_LENGTH];
	int			i;

	if (file->path == NULL || file->hash == NULL)
		return;
	if (pg_cryptohash_final(file->hash, digest, sizeof(digest)) < 0)
		elog(ERROR, "pgml: sha256 failed");
	pg_cryptohash_free(file->hash);
	file->hash = NULL;
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	if (strcmp(hex, file->checksum) != 0)
	{
		rmtree(tmp, true);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pgml: %s: stored model is corrupt (sha256 %.12s..., expected %.12s...)",
						file->what, hex, file->checksum),
				 errhint("Register the model again; the stored blob does not match its checksum.")));
	}
}

/* Removes DIR's leftovers of writers that died mid-write ("DIR.tmp<pid>"). */
static void
remove_leftovers(const char *dir)
{
	char	   *root = pstrdup(dir);
	char	   *base = strrchr(root, '/');
	DIR		   *d;
	struct dirent *de;
	Size		len;

	*base++ = '\0';
	len = strlen(base);
	d = AllocateDir(root);
	while ((de = ReadDir(d, root)) != NULL)
		if (strncmp(de->d_name, base, len) == 0 && strncmp(de->d_name + len, ".tmp", 4) == 0)
			rmtree(psprintf("%s/%s", root, de->d_name), true);
	FreeDir(d);
}

/*
 * One writer per version: an exclusive flock on DIR.lock, waited for with cancels
 * honoured. The lock goes with the file descriptor (at the end of the transaction, or
 * when the process dies).
 */
static int
lock_version(const char *dir)
{
	char	   *path = psprintf("%s.lock", dir);
	int			fd = OpenTransientFilePerm(path, O_RDWR | O_CREAT | PG_BINARY, S_IRUSR | S_IWUSR);

	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pgml: could not open \"%s\": %m", path)));
	while (flock(fd, LOCK_EX | LOCK_NB) != 0)
	{
		if (errno != EWOULDBLOCK && errno != EINTR)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("pgml: could not lock \"%s\": %m", path)));
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10 * 1000L);
	}
	return fd;
}

/*
 * Asks pgml_internal.check_model_files (PL/Python: LiteRT's own verifier) whether the
 * flatbuffers in TMP are sound, before anything in C maps them; it raises XX001 if not.
 */
static void
check_model_files(const char *tmp)
{
	static const Oid argtypes[] = {TEXTOID};
	Oid			fn = LookupFuncName(list_make2(makeString("pgml_internal"),
											   makeString("check_model_files")),
									1, argtypes, false);

	OidFunctionCall1(fn, CStringGetTextDatum(tmp));
}

/*
 * Write the files of model row ID into DIR: first into a directory of this process,
 * checked, then renamed into place, so readers see all of a model's files or none of
 * them. Rows are fetched one at a time: a large SavedModel is never held twice in memory.
 */
static void
materialize(const char *dir, const char *id)
{
	char	   *tmp = psprintf("%s.tmp%d", dir, MyProcPid);
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	Portal		portal;
	struct stat st;
	ModelFile	file = {0};
	int			lock = lock_version(dir);

	if (stat(dir, &st) == 0)
	{
		/* written by the process we waited for */
		CloseTransientFile(lock);
		return;
	}
	remove_leftovers(dir);		/* we hold the lock: nobody else is writing */
	args[0] = DirectFunctionCall1(int8in, CStringGetDatum(id));
	if (MakePGDirectory(tmp) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pgml: could not create \"%s\": %m", tmp)));

	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT file, data, checksum, what "
									   "FROM pgml_internal.model_files($1)",
									   1, argtypes, args, NULL, true, 0);
	for (;;)
	{
		HeapTuple	row;
		TupleDesc	desc;
		char	   *name;
		bool		isnull;
		Datum		data;

		SPI_cursor_fetch(portal, true, 1);
		if (SPI_processed == 0)
			break;
		row = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		name = text_column(row, desc, 1);
		check_file_name(name);
		if (file.path == NULL || strcmp(file.path + strlen(tmp) + 1, name) != 0)
		{
			close_file(&file, tmp);
			file.path = psprintf("%s/%s", tmp, name);
			file.checksum = SPI_getvalue(row, desc, 3);
			file.what = SPI_getvalue(row, desc, 4);
			file.hash = NULL;
			if (file.checksum != NULL)
			{
				file.hash = pg_cryptohash_create(PG_SHA256);
				if (file.hash == NULL || pg_cryptohash_init(file.hash) < 0)
					elog(ERROR, "pgml: sha256 failed");
			}
		}
		data = SPI_getbinval(row, desc, 2, &isnull);
		if (isnull)
			elog(ERROR, "pgml: model file \"%s\" has no data", name);
		append_to_file(&file, DatumGetByteaPP(data));
		SPI_freetuptable(SPI_tuptable);
	}
	close_file(&file, tmp);
	SPI_cursor_close(portal);

	PG_TRY();
	{
		check_model_files(tmp);
	}
	PG_CATCH();
	{
		rmtree(tmp, true);
		PG_RE_THROW();
	}
	PG_END_TRY();

	fsync_fname(tmp, true);
	if (rename(tmp, dir) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("pgml: could not rename \"%s\" to \"%s\": %m", tmp, dir)));
	/* the directory exists now: whoever waits on this lock, or comes later, sees it */
	unlink(psprintf("%s.lock", dir));
	CloseTransientFile(lock);
}

/* Directories whose files this backend has found sound (file_check.c). */
static List *sound_dirs = NIL;

/*
 * DIR's files, checked before this backend first uses them: a damaged copy (disk
 * damage, a bad restore) is moved aside and written again from the tables (a WARNING
 * says so); if the new copy is damaged too, an ERROR.
 */
static void
check_files(const char *dir, const char *id)
{
	const char *damaged;
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, sound_dirs)
		if (strcmp(lfirst(lc), dir) == 0)
			return;
	damaged = pgml_damaged_file(dir);
	if (damaged != NULL)
	{
		char	   *aside = psprintf("%s.damaged%d", dir, MyProcPid);
		int			lock;

		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pgml: this server's copy of %s is damaged; writing it again from the "
						"database", damaged),
				 errdetail("Directory \"%s\".", dir)));
		lock = lock_version(dir);
		/* another backend may have written it again meanwhile */
		if (pgml_damaged_file(dir) != NULL && rename(dir, aside) == 0)
			rmtree(aside, true);
		CloseTransientFile(lock);
		materialize(dir, id);
		damaged = pgml_damaged_file(dir);
		if (damaged != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("pgml: this server's copy of %s is damaged, also when written "
							"again from the database", damaged),
					 errdetail("Directory \"%s\".", dir),
					 errhint("Check the server's disk; the data directory may be damaged.")));
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	sound_dirs = lappend(sound_dirs, pstrdup(dir));
	MemoryContextSwitchTo(old);
}

/*
 * The name of the model's directory (under pgml_models_root()), its files written if
 * this server does not have them yet.
 * The tables are read as OWNER (the extension's owner), whatever the caller may read.
 */
static char *
resolve(const char *model, Oid owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	char	   *id;
	char	   *dir;
	char	   *result;
	struct stat st;
	MemoryContext caller = CurrentMemoryContext;
	PgmlSavedUser saved;

	args[0] = CStringGetTextDatum(model);
	saved = pgml_spi_as_owner(owner);
	/* pgml_internal.model_version raises the user-facing errors (unknown model, version). */
	if (SPI_execute_with_args("SELECT id, identity FROM pgml_internal.model_version($1)",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pgml: model lookup for \"%s\" returned no row", model);

	id = text_column(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	dir = psprintf("%s/%s-%s", pgml_models_root(), id,
				   text_column(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	if (stat(dir, &st) != 0)
	{
		char	   *root = pstrdup(pgml_models_root());

		if (pg_mkdir_p(root, pg_dir_create_mode) != 0 && errno != EEXIST)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("pgml: could not create \"%s\": %m", root)));
		materialize(dir, id);
	}
	check_files(dir, id);

	/* the reference: the directory's name, not a server path */
	result = MemoryContextStrdup(caller, strrchr(dir, '/') + 1);
	pgml_spi_as_owner_end(saved);
	return result;
}

PgmlSavedUser
pgml_spi_as_owner(Oid owner)
{
	PgmlSavedUser saved;

	GetUserIdAndSecContext(&saved.user, &saved.context);
	SetUserIdAndSecContext(owner, saved.context | SECURITY_LOCAL_USERID_CHANGE
						   | SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pgml: SPI_connect failed");
	pgml_without_jit_begin();	/* even while a statement is being planned */
	return saved;
}

void
pgml_spi_as_owner_end(PgmlSavedUser saved)
{
	pgml_without_jit_end();
	SPI_finish();
	SetUserIdAndSecContext(saved.user, saved.context);
}

/* This database's model files (see PGML_FILES_DIR). Never raises after the first call. */
const char *
pgml_models_root(void)
{
	static char *root = NULL;

	if (root == NULL)
		root = MemoryContextStrdup(TopMemoryContext,
								   psprintf("%s/%s/%u", DataDir, PGML_FILES_DIR,
											MyDatabaseId));
	return root;
}

/* -- References handed out in this statement -------------------------------------- */

static TimestampTz issued_statement = 0;
static List *issued = NIL;		/* char * in TopMemoryContext */

static void
issue(const char *ref)
{
	MemoryContext old;

	if (issued_statement != GetCurrentStatementStartTimestamp())
	{
		list_free_deep(issued);
		issued = NIL;
		issued_statement = GetCurrentStatementStartTimestamp();
	}
	if (pgml_ref_issued(ref, strlen(ref)))
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	issued = lappend(issued, pstrdup(ref));
	MemoryContextSwitchTo(old);
}

/* Whether pgml_internal.model_ref handed out REF (LEN bytes) in this statement. Never raises. */
bool
pgml_ref_issued(const char *ref, Size len)
{
	ListCell   *lc;

	if (issued_statement != GetCurrentStatementStartTimestamp())
		return false;
	foreach(lc, issued)
	{
		const char *known = lfirst(lc);

		if (strlen(known) == len && memcmp(known, ref, len) == 0)
			return true;
	}
	return false;
}

/* An ERROR unless pgml_internal.model_ref handed out REF in this statement. */
void
pgml_check_ref(const char *ref, Size len)
{
	if (!pgml_ref_issued(ref, len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pgml: not a model reference"),
				 errhint("Call pgml.predict/classify/predict_class with a model name; the "
						 "pgml_internal functions are internal.")));
}

/* The owner of function FN (of this extension): the extension's owner, who reads its tables. */
Oid
pgml_function_owner(Oid fn)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "pgml: cache lookup failed for function %u", fn);
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	return owner;
}

PG_FUNCTION_INFO_V1(pgml_model_ref);

Datum
pgml_model_ref(PG_FUNCTION_ARGS)
{
	char	   *model = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RefCache   *cache = (RefCache *) fcinfo->flinfo->fn_extra;
	char	   *ref;
	int			i;

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RefCache));
		cache->owner = pgml_function_owner(fcinfo->flinfo->fn_oid);
		fcinfo->flinfo->fn_extra = cache;
	}
	/*
	 * Most call sites live for one statement, but some outlive it (PL/pgSQL keeps its
	 * simple expressions for the whole transaction): a new top-level statement
	 * resolves afresh, so a new version is used from the next statement on.
	 */
	if (cache->statement != GetCurrentStatementStartTimestamp())
	{
		for (i = 0; i < REF_CACHE_SIZE && cache->model[i] != NULL; i++)
		{
			pfree(cache->model[i]);
			pfree(cache->ref[i]);
			cache->model[i] = cache->ref[i] = NULL;
		}
		cache->next = 0;
		cache->statement = GetCurrentStatementStartTimestamp();
	}
	for (i = 0; i < REF_CACHE_SIZE && cache->model[i] != NULL; i++)
		if (strcmp(cache->model[i], model) == 0)
		{
			issue(cache->ref[i]);
			PG_RETURN_TEXT_P(cstring_to_text(cache->ref[i]));
		}

	ref = resolve(model, cache->owner);
	issue(ref);
	i = cache->next;
	cache->next = (cache->next + 1) % REF_CACHE_SIZE;
	if (cache->model[i] != NULL)
	{
		pfree(cache->model[i]);
		pfree(cache->ref[i]);
	}
	cache->model[i] = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, model);
	cache->ref[i] = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, ref);
	PG_RETURN_TEXT_P(cstring_to_text(ref));
}

PG_FUNCTION_INFO_V1(pgml_tensor);

/* How a call site of pgml_internal.tensor turns its arrays' elements into float4. */
typedef struct ElementCast
{
	Oid			element;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	FmgrInfo	cast;			/* the element type's cast to real */
} ElementCast;

/* The cast to real of arrays of ELEMENT (integers, numeric ...), or an ERROR. */
static ElementCast *
element_cast(FunctionCallInfo fcinfo, Oid element)
{
	ElementCast *cast = (ElementCast *) fcinfo->flinfo->fn_extra;
	Oid			funcid = InvalidOid;

	if (cast != NULL && cast->element == element)
		return cast;
	if (find_coercion_pathway(FLOAT4OID, element, COERCION_IMPLICIT, &funcid)
		!= COERCION_PATH_FUNC || !OidIsValid(funcid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("pgml: model '%s' takes numbers, not an array of %s",
						text_to_cstring(PG_GETARG_TEXT_PP(1)), format_type_be(element)),
				 errhint("Pass real, double precision, numeric or integer values (or a "
						 "tf.Example as bytea).")));
	if (cast == NULL)
		cast = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ElementCast));
	cast->element = element;
	get_typlenbyvalalign(element, &cast->typlen, &cast->typbyval, &cast->typalign);
	fmgr_info_cxt(funcid, &cast->cast, fcinfo->flinfo->fn_mcxt);
	fcinfo->flinfo->fn_extra = cast;
	return cast;
}

/* The type an array's element TYPE stores: a domain's base type (posreal over real). */
static Oid
number_type(Oid type)
{
	return type == FLOAT4OID || type == FLOAT8OID ? type : getBaseType(type);
}

/* VALUES (of any number type) as float4 in OUT, as SQL's cast to real would give them. */
static void
to_float4(FunctionCallInfo fcinfo, ArrayType *values, int count, float4 *out)
{
	Oid			element = number_type(ARR_ELEMTYPE(values));

	if (element == FLOAT4OID)
		memcpy(out, ARR_DATA_PTR(values), sizeof(float4) * (Size) count);
	else if (element == FLOAT8OID)
	{
		const float8 *in = (const float8 *) ARR_DATA_PTR(values);

		for (int i = 0; i < count; i++)
		{
			/* as float8 -> float4 (dtof): out of real's range is an ERROR, not inf or 0 */
			out[i] = (float4) in[i];
			if ((isinf(out[i]) && !isinf(in[i])) || (out[i] == 0.0f && in[i] != 0.0))
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("pgml: input value %g for model '%s' is out of range for real",
								in[i], text_to_cstring(PG_GETARG_TEXT_PP(1)))));
		}
	}
	else
	{
		ElementCast *cast = element_cast(fcinfo, element);
		Datum	   *datums;
		int			n;

		deconstruct_array(values, ARR_ELEMTYPE(values), cast->typlen, cast->typbyval,
						  cast->typalign, &datums, NULL, &n);
		for (int i = 0; i < n && i < count; i++)
			out[i] = DatumGetFloat4(FunctionCall1(&cast->cast, datums[i]));
		pfree(datums);
	}
}

/*
 * pgml_internal.tensor(input anyarray, model): a numeric array packed for the scorers as
 * (ndim, dims..., float4 values...): real as it is, double precision, numeric and
 * integers cast to real.
 */
Datum
pgml_tensor(PG_FUNCTION_ARGS)
{
	ArrayType  *input = PG_GETARG_ARRAYTYPE_P(0);
	int32		ndim = ARR_NDIM(input);
	int			count = ArrayGetNItems(ndim, ARR_DIMS(input));
	Size		size = sizeof(int32) * (1 + ndim) + sizeof(float4) * (Size) count;
	bytea	   *result;
	char	   *out;

	if (number_type(ARR_ELEMTYPE(input)) != FLOAT4OID
		&& number_type(ARR_ELEMTYPE(input)) != FLOAT8OID)
		(void) element_cast(fcinfo, number_type(ARR_ELEMTYPE(input)));	/* or an ERROR */
	if (array_contains_nulls(input))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pgml: input array for model '%s' contains NULL elements",
						text_to_cstring(PG_GETARG_TEXT_PP(1))),
				 errhint("Replace NULLs (coalesce) or filter those rows out.")));
	if (size > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("pgml: input array of %d values is too large", count)));

	result = palloc(VARHDRSZ + size);
	SET_VARSIZE(result, VARHDRSZ + size);
	out = VARDATA(result);
	memcpy(out, &ndim, sizeof(int32));
	memcpy(out + sizeof(int32), ARR_DIMS(input), sizeof(int32) * ndim);
	to_float4(fcinfo, input, count, (float4 *) (out + sizeof(int32) * (1 + ndim)));
	PG_RETURN_BYTEA_P(result);
}

PG_FUNCTION_INFO_V1(pgml_only_value);

/*
 * pgml_internal.only_value(scores, model): the single element of a regressor's answer,
 * or an ERROR that says the model gives more (or no) values per row.
 */
Datum
pgml_only_value(PG_FUNCTION_ARGS)
{
	ArrayType  *scores;
	int			n;
	Datum	   *values;
	bool	   *nulls;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	scores = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_ELEMTYPE(scores) != FLOAT4OID)
		elog(ERROR, "pgml: only_value takes float4[]");
	n = ArrayGetNItems(ARR_NDIM(scores), ARR_DIMS(scores));
	if (n != 1)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("pgml: model '%s' gives %d values per row, not one",
						PG_ARGISNULL(1) ? "?" : text_to_cstring(PG_GETARG_TEXT_PP(1)), n),
				 errhint("pgml.predict_value is for regressors; use pgml.predict for all "
						 "the values, or name one output.")));
	deconstruct_array(scores, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT, &values, &nulls,
					  &n);
	if (nulls[0])
		PG_RETURN_NULL();
	PG_RETURN_DATUM(values[0]);
}
