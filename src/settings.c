/*
 * settings.c: the pgml.* settings, as real GUCs with types, bounds and contexts, so a
 * bad value is refused when it is set, SHOW and pg_settings know them, and the Python
 * side reads them (GetConfigOption) already checked.
 *
 * Contexts: what costs only the session's own time is per user (USERSET); what takes
 * the machine's resources (threads) is for superusers and whom they GRANT SET to.
 * Every pgml.* name that is not one of these is refused (MarkGUCPrefixReserved).
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "pgml_ext.h"

PG_MODULE_MAGIC;

bool		pgml_native_scoring = true;
int			pgml_threads = 1;
int			pgml_batch_chunk_rows = 1024;
int			pgml_model_cache_size = 4;
int			pgml_block_rows = 64;
bool		pgml_track_stats = true;
int			pgml_stats_max = 1000;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomBoolVariable("pgml.native_scoring",
							 "Scores rows of LiteRT models without PL/Python when it can.",
							 "Off: every row goes through PL/Python (same answers, slower).",
							 &pgml_native_scoring, true, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgml.threads",
							"Runtime threads per backend (LiteRT, TensorFlow).",
							"Above 1, LiteRT splits each call over that many threads (a "
							"CNN gains, a small MLP does not); many backends with many "
							"threads oversubscribe the cores.",
							&pgml_threads, 1, 1, 16, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgml.batch_chunk_rows",
							"Most rows per runtime call in the batch forms and score_into.",
							"Chunks also shrink so that one call takes about 100 ms: a "
							"cancel lands between chunks.",
							&pgml_batch_chunk_rows, 1024, 1, 65536, PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pgml.model_cache_size",
							"Models kept loaded per backend.",
							NULL, &pgml_model_cache_size, 4, 1, PGML_MAX_CACHED_MODELS,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgml.block_rows",
							"Most rows per runtime call when per-row SQL is run over "
							"blocks of rows.",
							"SELECT pgml.classify(m, x) FROM t scores blocks of 1, 2, 4, ... "
							"up to this many rows in one LiteRT call each, with per-row "
							"answers and errors; 1 scores row by row. Read when a "
							"statement is planned and started.",
							&pgml_block_rows, 64, 1, 8192, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("pgml.track_stats",
							 "Counts scoring in pgml.stats.",
							 "Two clock reads and an add per row scored in C; off for the "
							 "last few percent of a tiny model's speed.",
							 &pgml_track_stats, true, PGC_SUSET, 0, NULL, NULL, NULL);
	/* a server-start setting can only be made at server start (else FATAL) */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("pgml.stats_max",
								"Model versions pgml.stats counts, across all databases.",
								"Shared memory for that many versions is reserved at server "
								"start (pgml_ext in shared_preload_libraries); the counts of "
								"more versions are dropped (pgml.stats_dropped()).",
								&pgml_stats_max, 1000, 16, 100000, PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	stats_init();
	messages_init();
	block_scan_init();
	scoring_cost_init();
	jit_guard_init();
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("pgml");
#else
	EmitWarningsOnPlaceholders("pgml");
#endif
}
