/*
 * jit_guard.c: TensorFlow and PostgreSQL's JIT never share a process.
 *
 * TensorFlow carries its own LLVM. With PostgreSQL's JIT provider (llvmjit.so, which
 * links libLLVM) in the same process, the two crash each other in either order: a
 * JIT-compiled query after `import tensorflow` segfaults in llvm_create_context, and
 * TensorFlow's static initialisers segfault once the JIT has loaded. The postmaster
 * then restarts every connection. Registration runs TensorFlow in a child process
 * (pgml_ext/indb/isolated.py); scoring a TensorFlow-served model still imports it in the
 * backend, so:
 * - a statement that calls a function of pgml's schemas (anywhere in its plan, inlined
 *   SQL functions included) is planned without JIT, and every plan executed while it
 *   runs (the queries pgml's Python runs) starts without JIT: the statement that may
 *   import TensorFlow does not load LLVM first (JIT cannot speed up a runtime call);
 * - once TensorFlow is in the process (whoever imported it, a DO block included), jit
 *   is off for the rest of the backend: turned off (and made its reset value), refused
 *   by a check hook on jit (SET jit = on is an ERROR that says to reconnect), cleared
 *   from every plan the planner makes and forced off again at executor start, for
 *   plans cached before;
 * - runtimes/tensorflow.py asks pgml_llvm_loaded() first and refuses to import
 *   TensorFlow in a backend that has loaded LLVM, with an ERROR that says what to do.
 */
#include "postgres.h"

#include <link.h>
#include <string.h>

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "jit/jit.h"
#include "nodes/plannodes.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "pgml_ext.h"

/* Libraries by which TensorFlow and LLVM are known to be in the process. */
static const char *const tensorflow_libraries[] = {"libtensorflow_framework", "_pywrap_tensorflow_internal", NULL};
static const char *const llvm_libraries[] = {"llvmjit", "libLLVM", NULL};

/* Our mark on a pgml statement's jitFlags: a bit PostgreSQL does not read. */
#define PGJIT_PGML_GUARDED (1 << 15)

static ExecutorStart_hook_type previous_executor_start = NULL;
static ExecutorEnd_hook_type previous_executor_end = NULL;

/* Marked statements running now (reset at transaction end: an ERROR skips their end). */
static int	guarded_running = 0;

typedef struct LibrarySearch
{
	const char *const *names;
	bool		found;
} LibrarySearch;

static int
find_library(struct dl_phdr_info *info, size_t size, void *arg)
{
	LibrarySearch *search = (LibrarySearch *) arg;
	const char *const *name;

	if (info->dlpi_name == NULL)
		return 0;
	for (name = search->names; *name != NULL; name++)
		if (strstr(info->dlpi_name, *name) != NULL)
		{
			search->found = true;
			return 1;
		}
	return 0;
}

/* Whether a shared object whose path contains one of NAMES is loaded (never raises). */
static bool
library_loaded(const char *const *names)
{
	LibrarySearch search = {names, false};

	dl_iterate_phdr(find_library, &search);
	return search.found;
}

/* The number of objects ever loaded into the process: unchanged, nothing new is loaded. */
static int
count_loads(struct dl_phdr_info *info, size_t size, void *arg)
{
	*(unsigned long long *) arg = info->dlpi_adds;
	return 1;
}

/* Whether TensorFlow has been loaded into this process: once it has, for good. */
static bool
tensorflow_loaded(void)
{
	static bool loaded = false;
	static unsigned long long seen_loads = 0;
	unsigned long long loads = 0;

	if (loaded)
		return true;
	dl_iterate_phdr(count_loads, &loads);
	if (loads == seen_loads)
		return false;
	seen_loads = loads;
	loaded = library_loaded(tensorflow_libraries);
	return loaded;
}

/* Exported for PL/Python (ctypes): TensorFlow must not load into this process. */
PGDLLEXPORT bool
pgml_llvm_loaded(void)
{
	return library_loaded(llvm_libraries);
}

/* jit off for the rest of this backend (check_jit refuses to turn it on again). */
static void
jit_off_for_good(void)
{
	static bool done = false;

	jit_enabled = false;		/* what the JIT provider checks before it loads */
	if (done || IsInParallelMode())
		return;
	done = true;
	/* also its reset value: RESET jit keeps it off */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	ereport(LOG,
			(errmsg("pgml: TensorFlow is loaded in this backend; jit is off until it exits"),
			 errhidestmt(true)));
}

/*
 * The syscache hash values of the functions in schemas pgml and pgml_internal, sorted:
 * a plan lists every function it depends on (calls, inlined SQL functions, in any
 * expression of any node) as such a hash in its invalItems. Made again after any change
 * to pg_proc (an extension update).
 */
static uint32 *pgml_hashes = NULL;
static int	n_pgml_hashes = -1;

static void
forget_pgml_functions(Datum arg, int cacheid, uint32 hashvalue)
{
	n_pgml_hashes = -1;
}

static int
compare_hashes(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a,
				y = *(const uint32 *) b;

	return x < y ? -1 : x > y;
}

static void
find_pgml_functions(void)
{
	Oid			schemas[2] = {get_namespace_oid("pgml", true),
							  get_namespace_oid("pgml_internal", true)};
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tuple;
	int			capacity = 256;

	if (pgml_hashes == NULL)
		pgml_hashes = MemoryContextAlloc(TopMemoryContext, sizeof(uint32) * capacity);
	n_pgml_hashes = 0;
	if (!OidIsValid(schemas[0]) && !OidIsValid(schemas[1]))
		return;
	rel = table_open(ProcedureRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tuple);

		if (proc->pronamespace != schemas[0] && proc->pronamespace != schemas[1])
			continue;
		if (n_pgml_hashes == capacity)
		{
			capacity *= 2;
			pgml_hashes = repalloc(pgml_hashes, sizeof(uint32) * capacity);
		}
		pgml_hashes[n_pgml_hashes++] = GetSysCacheHashValue1(PROCOID,
															 ObjectIdGetDatum(proc->oid));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	qsort(pgml_hashes, n_pgml_hashes, sizeof(uint32), compare_hashes);
}

/* Whether STMT calls a function of pgml's schemas (or one a hash mistakes for one). */
static bool
calls_pgml(PlannedStmt *stmt)
{
	ListCell   *lc;

	if (n_pgml_hashes < 0)
		find_pgml_functions();
	foreach(lc, stmt->invalItems)
	{
		PlanInvalItem *item = lfirst(lc);

		if (item->cacheId == PROCOID
			&& bsearch(&item->hashValue, pgml_hashes, n_pgml_hashes, sizeof(uint32),
					   compare_hashes) != NULL)
			return true;
	}
	return false;
}

/*
 * STMT without JIT if TensorFlow is in this process, or if STMT may load it (it calls
 * pgml: marked, so that what is planned while it runs is executed without JIT too).
 */
void
pgml_jit_guard(PlannedStmt *stmt)
{
	if (tensorflow_loaded())
	{
		jit_off_for_good();
		stmt->jitFlags = PGJIT_NONE;
		return;
	}
	if (jit_enabled && calls_pgml(stmt))
		stmt->jitFlags = PGJIT_PGML_GUARDED;
}

/*
 * A plan made before TensorFlow loaded (a prepared statement's) runs without JIT too;
 * and so does any plan while a marked statement runs (the queries pgml's Python runs):
 * PostgreSQL compiles a plan's expressions as its executor starts.
 */
static void
guarded_executor_start(QueryDesc *query, int eflags)
{
	bool		was_enabled = jit_enabled;

	if (tensorflow_loaded())
		jit_off_for_good();
	else if (guarded_running > 0)
		jit_enabled = false;
	PG_TRY();
	{
		if (previous_executor_start)
			previous_executor_start(query, eflags);
		else
			standard_ExecutorStart(query, eflags);
	}
	PG_FINALLY();
	{
		if (!tensorflow_loaded())
			jit_enabled = was_enabled;
	}
	PG_END_TRY();
	if (query->plannedstmt->jitFlags & PGJIT_PGML_GUARDED)
		guarded_running++;
}

/*
 * pgml's own queries (SPI, src/pgml_ext.c) run without JIT, also while a statement is
 * being planned (a model's cost) and before its executor starts. An ERROR between the
 * two leaves the count up until its (sub)transaction ends.
 */
void
pgml_without_jit_begin(void)
{
	guarded_running++;
}

void
pgml_without_jit_end(void)
{
	if (guarded_running > 0)
		guarded_running--;
}

static void
guarded_executor_end(QueryDesc *query)
{
	if ((query->plannedstmt->jitFlags & PGJIT_PGML_GUARDED) && guarded_running > 0)
		guarded_running--;
	if (previous_executor_end)
		previous_executor_end(query);
	else
		standard_ExecutorEnd(query);
}

static void
guard_at_transaction_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT
		|| event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT
		|| event == XACT_EVENT_PREPARE)
		guarded_running = 0;
}

/* A subtransaction that fails skips its statements' ends: their marks go with it. */
#define SAVED_LEVELS 64
static int	running_at_level[SAVED_LEVELS];

static void
guard_at_subtransaction(SubXactEvent event, SubTransactionId sub, SubTransactionId parent,
						void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (level >= SAVED_LEVELS)
		return;
	if (event == SUBXACT_EVENT_START_SUB)
		running_at_level[level] = guarded_running;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		guarded_running = Min(guarded_running, running_at_level[level]);
}

/* jit's check hook: on is refused once TensorFlow is in the process. */
static bool
check_jit(bool *newval, void **extra, GucSource source)
{
	/* ALTER ROLE/DATABASE/SYSTEM and CREATE FUNCTION only check the value (PGC_S_TEST);
	 * a reload that applies it is overruled at the next plan and executor start */
	if (!*newval || source == PGC_S_TEST || source == PGC_S_FILE || !tensorflow_loaded())
		return true;
	GUC_check_errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
	GUC_check_errmsg("pgml: jit cannot be turned on in a session that has loaded TensorFlow");
	GUC_check_errdetail("PostgreSQL's JIT (LLVM) and TensorFlow crash each other in one "
						"process; this session scored a TensorFlow-served model or imported "
						"TensorFlow.");
	GUC_check_errhint("Run JIT-compiled queries in a new session.");
	return false;
}

/* jit's GUC record, to hang check_jit on (PostgreSQL gives it no check hook). */
static struct config_bool *
jit_setting(void)
{
#if PG_VERSION_NUM >= 160000
	int			n;
	struct config_generic **all = get_guc_variables(&n);
#else
	int			n = GetNumConfigOptions();
	struct config_generic **all = get_guc_variables();
#endif

	for (int i = 0; i < n; i++)
		if (all[i]->vartype == PGC_BOOL && strcmp(all[i]->name, "jit") == 0)
			return (struct config_bool *) all[i];
	return NULL;
}

void
jit_guard_init(void)
{
	struct config_bool *jit = jit_setting();

	if (jit != NULL && jit->check_hook == NULL)
		jit->check_hook = check_jit;
	previous_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = guarded_executor_start;
	previous_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = guarded_executor_end;
	RegisterXactCallback(guard_at_transaction_end, NULL);
	RegisterSubXactCallback(guard_at_subtransaction, NULL);
	CacheRegisterSyscacheCallback(PROCOID, forget_pgml_functions, (Datum) 0);
}
