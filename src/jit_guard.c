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
 * - a statement that calls a function of pgml's schemas is planned without JIT, and so
 *   is every statement planned while it runs (the queries pgml's Python runs): the
 *   statement that may import TensorFlow does not load LLVM first (JIT cannot speed up
 *   a runtime call anyway);
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

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "jit/jit.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/lsyscache.h"

#include "pgml_ext.h"

/* Libraries by which TensorFlow and LLVM are known to be in the process. */
static const char *const tensorflow_libraries[] = {"libtensorflow_framework", "_pywrap_tensorflow", NULL};
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

/* Whether NODE calls a function of the schemas pgml or pgml_internal. */
static bool
calls_pgml(Node *node, Oid *schemas)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr))
	{
		Oid			schema = get_func_namespace(((FuncExpr *) node)->funcid);

		if (OidIsValid(schema) && (schema == schemas[0] || schema == schemas[1]))
			return true;
	}
	return expression_tree_walker(node, calls_pgml, schemas);
}

/* Whether PLAN or a plan below it calls a function of pgml's schemas. */
static bool
plan_calls_pgml(Plan *plan, Oid *schemas)
{
	ListCell   *lc;
	List	   *children = NIL;

	if (plan == NULL)
		return false;
	if (calls_pgml((Node *) plan->targetlist, schemas)
		|| calls_pgml((Node *) plan->qual, schemas))
		return true;
	switch (nodeTag(plan))
	{
		case T_FunctionScan:
			if (calls_pgml((Node *) ((FunctionScan *) plan)->functions, schemas))
				return true;
			break;
		case T_ValuesScan:
			if (calls_pgml((Node *) ((ValuesScan *) plan)->values_lists, schemas))
				return true;
			break;
		case T_Result:
			if (calls_pgml(((Result *) plan)->resconstantqual, schemas))
				return true;
			break;
		case T_ModifyTable:
			if (calls_pgml((Node *) ((ModifyTable *) plan)->returningLists, schemas)
				|| calls_pgml((Node *) ((ModifyTable *) plan)->onConflictSet, schemas))
				return true;
			break;
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
			if (calls_pgml((Node *) ((Join *) plan)->joinqual, schemas))
				return true;
			break;
		case T_Append:
			children = ((Append *) plan)->appendplans;
			break;
		case T_MergeAppend:
			children = ((MergeAppend *) plan)->mergeplans;
			break;
		case T_SubqueryScan:
			children = list_make1(((SubqueryScan *) plan)->subplan);
			break;
		case T_CustomScan:
			children = ((CustomScan *) plan)->custom_plans;
			break;
		default:
			break;
	}
	foreach(lc, children)
		if (plan_calls_pgml(lfirst(lc), schemas))
			return true;
	return plan_calls_pgml(plan->lefttree, schemas)
		|| plan_calls_pgml(plan->righttree, schemas);
}

/*
 * STMT without JIT if TensorFlow is in this process, or if STMT may load it: it calls
 * pgml, or it is planned while such a statement runs (marked, for what it plans).
 */
void
pgml_jit_guard(PlannedStmt *stmt)
{
	Oid			schemas[2];
	bool		calls = false;
	ListCell   *lc;

	if (tensorflow_loaded())
	{
		jit_off_for_good();
		stmt->jitFlags = PGJIT_NONE;
		return;
	}
	if (!jit_enabled)
		return;
	if (guarded_running > 0)
	{
		stmt->jitFlags = PGJIT_PGML_GUARDED;
		return;
	}
	schemas[0] = get_namespace_oid("pgml", true);
	schemas[1] = get_namespace_oid("pgml_internal", true);
	if (!OidIsValid(schemas[0]) && !OidIsValid(schemas[1]))
		return;
	calls = plan_calls_pgml(stmt->planTree, schemas);
	foreach(lc, stmt->subplans)
		calls = calls || plan_calls_pgml(lfirst(lc), schemas);
	if (calls)
		stmt->jitFlags = PGJIT_PGML_GUARDED;
}

/* A plan made before TensorFlow loaded (a prepared statement's) runs without JIT too. */
static void
guarded_executor_start(QueryDesc *query, int eflags)
{
	if (tensorflow_loaded())
		jit_off_for_good();
	if (previous_executor_start)
		previous_executor_start(query, eflags);
	else
		standard_ExecutorStart(query, eflags);
	if (query->plannedstmt->jitFlags & PGJIT_PGML_GUARDED)
		guarded_running++;
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

/* jit's check hook: on is refused once TensorFlow is in the process. */
static bool
check_jit(bool *newval, void **extra, GucSource source)
{
	if (!*newval || !tensorflow_loaded())
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
}
