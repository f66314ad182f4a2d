/*
 * pgml_ext.h: what the C files of pgml_ext share.
 */
#ifndef PGML_EXT_H
#define PGML_EXT_H

#include "postgres.h"

#include "fmgr.h"

#include "compat.h"

/* settings.c: the pgml.* settings, defined in _PG_init with types and bounds */
extern bool pgml_native_scoring;
extern int	pgml_threads;
extern int	pgml_batch_chunk_rows;
extern int	pgml_model_cache_size;
extern int	pgml_block_rows;

/* block_scan.c: per-row SQL over blocks of rows (a CustomScan added after planning). */
extern void block_scan_init(void);
extern PGFunction pgml_c_function(Oid funcid);

/* scoring_cost.c: a scoring call's cost and a scoring scan's workers, per model. */
struct FuncExpr;
struct PlannedStmt;
extern void scoring_cost_init(void);
extern double pgml_call_row_us(struct FuncExpr *call);
extern void pgml_jit_without_scoring(struct PlannedStmt *stmt);

/* jit_guard.c: TensorFlow and PostgreSQL's JIT never share a process. */
extern void jit_guard_init(void);
extern void pgml_jit_guard(struct PlannedStmt *stmt);
extern PGDLLEXPORT bool pgml_llvm_loaded(void);
extern void pgml_without_jit_begin(void);
extern void pgml_without_jit_end(void);

/*
 * stats.c: the counters behind pgml.stats (shared memory when preloaded). Counting
 * never raises; the ref forms are exported for PL/Python (pgml_ext.indb.stats).
 */
extern int	pgml_stats_max;
extern bool pgml_track_stats;
extern void stats_init(void);
extern int64 pgml_ref_version(const char *ref, Size len);
extern void pgml_stats_count_version(int64 version_id, int64 calls, int64 c_rows,
									 int64 fallback_rows, int64 errors, double ms);
extern void pgml_stats_load_version(int64 version_id, double ms);
extern PGDLLEXPORT void pgml_stats_count(const char *ref, Size len, int64 calls,
										 int64 fallback_rows, int64 errors, double ms);
extern PGDLLEXPORT void pgml_stats_load(const char *ref, Size len, double ms);

/* messages.c: pgml's errors without PL/Python's traceback in their CONTEXT. */
extern void messages_init(void);
extern char *pgml_without_traceback(char *context);

/* Most models kept loaded per backend (pgml.model_cache_size's upper bound). */
#define PGML_MAX_CACHED_MODELS 16

/*
 * A batch's runtime call should take about this long at most: chunks shrink to fit, so
 * a cancel or statement_timeout lands within a fraction of a second for any model.
 */
#define PGML_CHUNK_BUDGET_MS 100

/*
 * pgml_ext.c: model references handed out by pgml_internal.model_ref in this statement.
 * Exported: PL/Python asks through ctypes (pgml_ext.indb.server.ref_issued).
 */
extern PGDLLEXPORT bool pgml_ref_issued(const char *ref, Size len);
extern void pgml_check_ref(const char *ref, Size len);
extern Oid	pgml_function_owner(Oid fn);
extern PGDLLEXPORT Datum pgml_model_ref(PG_FUNCTION_ARGS);

/*
 * SPI as OWNER (the extension's owner, who reads its tables, whatever the caller may),
 * in a restricted security context; pgml_spi_as_owner_end undoes both.
 */
typedef struct PgmlSavedUser
{
	Oid			user;
	int			context;
} PgmlSavedUser;
extern PgmlSavedUser pgml_spi_as_owner(Oid owner);
extern void pgml_spi_as_owner_end(PgmlSavedUser saved);

/*
 * Where this database's model files live: <data directory>/pgsql_tmp_pgml_ext/<db oid>.
 * A cache of the model tables, rebuilt on demand on each server: the pgsql_tmp prefix
 * keeps it out of base backups (pg_basebackup skips such names), so a standby writes
 * its own. Exported for PL/Python (ctypes).
 */
#define PGML_FILES_DIR "pgsql_tmp_pgml_ext"

/* file_check.c: NULL if a version directory's files are sound, else the first that is not. */
extern const char *pgml_damaged_file(const char *dir);
extern PGDLLEXPORT const char *pgml_models_root(void);

#endif
