/*
 * scoring_cost.c: what a scoring call costs the planner, per model.
 *
 * The scoring functions' own COST is one number for every model, and a CNN row costs a
 * hundred times an MLP row. Registration measures LiteRT's time per row on blocks of
 * rows (conversion.microseconds_per_row, kept in pgml.model_versions.runtimes); for a
 * call whose model is a constant, the planner gets that time:
 * - as the call's cost (a support function answering SupportRequestCost), so it weighs
 *   a parallel plan against a serial one by the model's real cost;
 * - as the number of workers a scan that scores its rows may use (a
 *   get_relation_info_hook): PostgreSQL sizes workers by a table's pages, but a
 *   scoring query's work is its rows times the model's cost, and a 2 MB table of CNN
 *   inputs is seconds of work.
 * Models with no measured time (TensorFlow: each worker would start it) keep the
 * functions' COST and PostgreSQL's own worker count. And since a plan's cost now says
 * how long the model runs, JIT is decided on the plan's cost without its scoring: JIT
 * cannot speed LiteRT up, and LLVM would add ~50 MB and tens of ms to every backend.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "jit/jit.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "nodes/plannodes.h"
#include "nodes/supportnodes.h"
#include "optimizer/cost.h"
#include "optimizer/paths.h"
#include "optimizer/plancat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "native.h"
#include "pgml_ext.h"

/*
 * PostgreSQL's cost units in time, as measured here: parallel_setup_cost (1000) is
 * about a worker's start (~5 ms) and a sequential scan of a cached table costs about
 * one unit per 3-5 us; so one unit is taken as 5 us.
 */
#define MICROSECONDS_PER_COST_UNIT 5.0
/*
 * What C adds to LiteRT's time per row: detoasting the input, reading it, copying it
 * in and the answer out (~1.5 us for the MLP's 3 kB inputs, measured in blocks).
 */
#define C_ROW_OVERHEAD_US 1.5
/* A worker pays for itself with this much scoring (its start is 5-10 ms). */
#define WORK_PER_WORKER_MS 50.0

#define COST_CACHE_SIZE 8

/* Row costs looked up in this statement: a new version's cost counts from the next. */
static struct
{
	TimestampTz statement;
	int			n;
	char	   *model[COST_CACHE_SIZE];
	double		row_us[COST_CACHE_SIZE];	/* < 0: not measured */
}			costs;

static get_relation_info_hook_type previous_relation_info = NULL;

/* LiteRT's microseconds per row for MODEL's serving version, or -1 if not measured. */
static double
model_row_us(const char *model, Oid owner)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	double		row_us = -1;
	bool		isnull;
	PgmlSavedUser saved;
	int			i;

	if (costs.statement != GetCurrentStatementStartTimestamp())
	{
		for (i = 0; i < costs.n; i++)
			pfree(costs.model[i]);
		costs.n = 0;
		costs.statement = GetCurrentStatementStartTimestamp();
	}
	for (i = 0; i < costs.n; i++)
		if (strcmp(costs.model[i], model) == 0)
			return costs.row_us[i];

	args[0] = CStringGetTextDatum(model);
	saved = pgml_spi_as_owner(owner);
	if (SPI_execute_with_args("SELECT pgml_internal.row_cost($1)", 1, argtypes, args, NULL,
							  true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		Datum		value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull);

		if (!isnull && DatumGetFloat8(value) >= 0)
			row_us = DatumGetFloat8(value);
	}
	pgml_spi_as_owner_end(saved);

	if (costs.n < COST_CACHE_SIZE)
	{
		costs.model[costs.n] = MemoryContextStrdup(TopMemoryContext, model);
		costs.row_us[costs.n++] = row_us;
	}
	return row_us;
}

/*
 * LiteRT's microseconds per row for CALL (a per-row scoring call), or -1: its model
 * must be a constant name, as pgml.classify('m', x) is once inlined (model_ref('m')).
 */
double
pgml_call_row_us(FuncExpr *call)
{
	Node	   *ref = linitial(call->args);
	FuncExpr   *lookup;
	Const	   *name;

	if (!pgml_native_scoring || !IsA(ref, FuncExpr))
		return -1;				/* PL/Python scores every row: its cost is not measured */
	lookup = (FuncExpr *) ref;
	if (pgml_c_function(lookup->funcid) != pgml_model_ref || list_length(lookup->args) != 1
		|| !IsA(linitial(lookup->args), Const))
		return -1;
	name = linitial(lookup->args);
	if (name->constisnull || name->consttype != TEXTOID)
		return -1;
	return model_row_us(TextDatumGetCString(name->constvalue),
						pgml_function_owner(call->funcid));
}

PG_FUNCTION_INFO_V1(pgml_scoring_support);

/* SUPPORT function of the per-row scoring functions: their cost per call, per model. */
Datum
pgml_scoring_support(PG_FUNCTION_ARGS)
{
	Node	   *request = (Node *) PG_GETARG_POINTER(0);
	SupportRequestCost *cost;
	double		row_us;

	if (!IsA(request, SupportRequestCost))
		PG_RETURN_POINTER(NULL);
	cost = (SupportRequestCost *) request;
	if (cost->node == NULL || !IsA(cost->node, FuncExpr)
		|| pgml_scoring_call(cost->node) == NULL
		|| (row_us = pgml_call_row_us((FuncExpr *) cost->node)) < 0)
		PG_RETURN_POINTER(NULL);
	cost->startup = 0;
	cost->per_tuple = (row_us + C_ROW_OVERHEAD_US) / MICROSECONDS_PER_COST_UNIT;
	PG_RETURN_POINTER(cost);
}

/* Adds up the microseconds per row of the scoring calls under NODE. */
static bool
sum_row_us(Node *node, double *total)
{
	if (node == NULL || IsA(node, Query))
		return false;			/* a subquery's rows are not this table's */
	if (pgml_scoring_call(node) != NULL)
	{
		double		row_us = pgml_call_row_us((FuncExpr *) node);

		if (row_us >= 0)
			*total += row_us + C_ROW_OVERHEAD_US;
	}
	return expression_tree_walker(node, sum_row_us, total);
}

/*
 * Workers for the one table of a query that scores its rows: enough that each has
 * WORK_PER_WORKER_MS of scoring, never fewer than PostgreSQL gives it by its size,
 * and never more than max_parallel_workers_per_gather. A table's parallel_workers
 * setting is the user's and stays.
 */
static void
relation_info(PlannerInfo *root, Oid relid, bool inhparent, RelOptInfo *rel)
{
	Query	   *query = root->parse;
	double		row_us = 0;
	double		work_ms;
	int			workers;

	if (previous_relation_info)
		previous_relation_info(root, relid, inhparent, rel);
	if (rel->rel_parallel_workers != -1 || max_parallel_workers_per_gather == 0
		|| query->commandType != CMD_SELECT || list_length(query->rtable) != 1
		|| rel->reloptkind != RELOPT_BASEREL || rel->tuples <= 0)
		return;
	sum_row_us((Node *) query->targetList, &row_us);
	if (query->jointree)
		sum_row_us(query->jointree->quals, &row_us);
	work_ms = rel->tuples * row_us / 1000.0;
	workers = (int) Min(work_ms / WORK_PER_WORKER_MS, max_parallel_workers_per_gather);
	if (workers > compute_parallel_worker(rel, rel->pages, -1, max_parallel_workers_per_gather))
		rel->rel_parallel_workers = workers;
}

void
scoring_cost_init(void)
{
	previous_relation_info = get_relation_info_hook;
	get_relation_info_hook = relation_info;
}

/* The planner's cost of the scoring calls in PLAN's nodes (per row, times their rows). */
static double
scoring_cost(Plan *plan)
{
	double		row_us = 0;
	double		cost;
	ListCell   *lc;

	if (plan == NULL)
		return 0;
	sum_row_us((Node *) plan->targetlist, &row_us);
	sum_row_us((Node *) plan->qual, &row_us);
	cost = plan->plan_rows * row_us / MICROSECONDS_PER_COST_UNIT
		+ scoring_cost(plan->lefttree) + scoring_cost(plan->righttree);
	if (IsA(plan, Append))
		foreach(lc, ((Append *) plan)->appendplans)
			cost += scoring_cost(lfirst(lc));
	else if (IsA(plan, MergeAppend))
		foreach(lc, ((MergeAppend *) plan)->mergeplans)
			cost += scoring_cost(lfirst(lc));
	else if (IsA(plan, SubqueryScan))
		cost += scoring_cost(((SubqueryScan *) plan)->subplan);
	else if (IsA(plan, CustomScan))
		foreach(lc, ((CustomScan *) plan)->custom_plans)
			cost += scoring_cost(lfirst(lc));
	return cost;
}

/* STMT's JIT as standard_planner decides it, on its cost less its scoring calls'. */
void
pgml_jit_without_scoring(PlannedStmt *stmt)
{
	double		cost;
	ListCell   *lc;

	if (stmt->jitFlags == PGJIT_NONE)
		return;
	cost = scoring_cost(stmt->planTree);
	foreach(lc, stmt->subplans)
		cost += scoring_cost(lfirst(lc));
	if (cost <= 0)
		return;
	cost = stmt->planTree->total_cost - cost;
	stmt->jitFlags = PGJIT_NONE;
	if (jit_above_cost >= 0 && cost > jit_above_cost)
	{
		stmt->jitFlags |= PGJIT_PERFORM;
		if (jit_optimize_above_cost >= 0 && cost > jit_optimize_above_cost)
			stmt->jitFlags |= PGJIT_OPT3;
		if (jit_inline_above_cost >= 0 && cost > jit_inline_above_cost)
			stmt->jitFlags |= PGJIT_INLINE;
		if (jit_expressions)
			stmt->jitFlags |= PGJIT_EXPR;
		if (jit_tuple_deforming)
			stmt->jitFlags |= PGJIT_DEFORM;
	}
}
