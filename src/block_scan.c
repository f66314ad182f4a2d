/*
 * block_scan.c: per-row scoring SQL executed over blocks of rows.
 *
 * SELECT pgml.classify(m, x) FROM t calls a C scoring function (native.c) once per row,
 * and each call runs LiteRT on one row. After planning, a scan whose target list calls
 * those functions directly (SELECT, CREATE TABLE AS, INSERT ... SELECT, the workers'
 * share of a parallel plan) gets a CustomScan "PgmlBlockScan" on top of it: the scan
 * computes the calls' arguments instead of the calls, PgmlBlockScan reads a block of
 * its rows, scores each call's block in one LiteRT run (native_score_block) and returns
 * the rows one by one with the answers in place, in the scan's order and layout.
 *
 * Per-row semantics stay: a row C cannot answer (an odd input, a NULL argument, a
 * model not on the C path) is handed, at its turn, to the scoring function itself,
 * which sends it to PL/Python, which answers or raises the row's ERROR. Blocks start
 * at one row and double up to pgml.block_rows, so LIMIT 1 or a cursor's first FETCH
 * scores one row, and a cancel lands within a block. SCROLL cursors keep the per-row
 * plan (a block scan reads forward only); pgml.block_rows = 1 turns blocks off.
 *
 * Under UPDATE, DELETE and FOR UPDATE, a row changed by a concurrent transaction is
 * re-read by EvalPlanQual: the recheck scores the scan's new version per row. Each row
 * returned carries its table's tid and the block scan names the scan's table, so WHERE
 * CURRENT OF finds the cursor's row although the scan has read ahead.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/plannodes.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "native.h"
#include "pgml_ext.h"

#define CALL_ARGS 4				/* ref, input, output, signature */
/*
 * A block of a slow model takes about this long in LiteRT at most (5 ms: the reference
 * CNN's blocks are ~17 rows, not 64): its activations take a quarter of the memory,
 * and such a block already runs within 2% of a 64-row one's time per row.
 */
#define BLOCK_BUDGET_US 5000.0

/* One call of the target list: where its answer goes and its arguments come from. */
typedef struct BlockCall
{
	int			column;			/* its column in the scan tuple, its input's too (0-based) */
	Answer		answer;
	bool		packed;
	FmgrInfo	function;		/* the per-row function, for rows C leaves */
	int			args[CALL_ARGS];	/* their columns in the child's output (0-based) */
	Datum	   *out;			/* per block row */
	bool	   *out_null;
	bool	   *done;
} BlockCall;

typedef struct BlockScanState
{
	CustomScanState css;
	int			n_calls;
	BlockCall  *calls;
	int			capacity;		/* pgml.block_rows when the scan started */
	int			target;			/* rows of the next block: 1, 2, 4, ... capacity */
	TupleTableSlot **rows;		/* the block: copies of the child's rows */
	ItemPointerData *tids;		/* and where in the table each came from */
	Oid			table;			/* the table the child scans, if it scans one */
	int			n_rows;
	int			next;			/* the next row to return */
	bool		exhausted;		/* the child returned its last row */
	MemoryContext block_context;	/* the answers of the block */
} BlockScanState;

static planner_hook_type previous_planner = NULL;
static CustomScanMethods block_scan_methods;
static CustomExecMethods block_exec_methods;

/* -- Planning ------------------------------------------------------------------------ */

/* The function FUNCID runs, if it is a C function (no other language is loaded). */
PGFunction
pgml_c_function(Oid funcid)
{
	FmgrInfo	info;
	HeapTuple	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	bool		in_c;

	if (!HeapTupleIsValid(proc))
		return NULL;
	in_c = ((Form_pg_proc) GETSTRUCT(proc))->prolang == ClanguageId;
	ReleaseSysCache(proc);
	if (!in_c)
		return NULL;
	fmgr_info(funcid, &info);
	return info.fn_addr;
}

/* The per-row scoring function NODE calls, if it is such a call (a C function of ours). */
const NativeEntry *
pgml_scoring_call(Node *node)
{
	PGFunction	fn;
	const NativeEntry *e;

	if (node == NULL || !IsA(node, FuncExpr)
		|| list_length(((FuncExpr *) node)->args) != CALL_ARGS
		|| (fn = pgml_c_function(((FuncExpr *) node)->funcid)) == NULL)
		return NULL;
	for (e = native_entries; e->fn != NULL; e++)
		if (e->fn == fn)
			return e;
	return NULL;
}

/*
 * Whether every argument of NODE is evaluated whenever NODE is (no CASE, COALESCE,
 * AND/OR, FILTER ... that evaluates some of them for some rows only).
 */
static bool
evaluates_every_argument(Node *node)
{
	return IsA(node, List) || IsA(node, TargetEntry) || IsA(node, FuncExpr)
		|| IsA(node, OpExpr) || IsA(node, RelabelType) || IsA(node, CoerceViaIO);
}

/* The entry of *TLIST that computes EXPR, appended if there is none. */
static TargetEntry *
entry_for(List **tlist, Expr *expr)
{
	ListCell   *lc;
	TargetEntry *tle;

	foreach(lc, *tlist)
		if (equal(lfirst_node(TargetEntry, lc)->expr, expr))
			return lfirst(lc);
	tle = makeTargetEntry(expr, list_length(*tlist) + 1, NULL, false);
	*tlist = lappend(*tlist, tle);
	return tle;
}

/* A Var of VARNO for column TLE (computing EXPR's value). */
static Var *
var_for(int varno, TargetEntry *tle)
{
	Node	   *expr = (Node *) tle->expr;

	return makeVar(varno, tle->resno, exprType(expr), exprTypmod(expr), exprCollation(expr), 0);
}

/*
 * PgmlBlockScan on top of SCAN, whose target list's entries are each a plain value or
 * a call of a per-row scoring function. The scan then outputs its other columns as
 * they were, each call's input in the call's column, and the calls' other arguments
 * after them: the block scan's scan tuple, the calls answered in their columns. Its
 * target list is the caller's.
 */
static Plan *
block_scan_over(Plan *scan)
{
	List	   *child_tlist = NIL,
			   *private = NIL,
			   *extra = NIL;
	int			n_columns = list_length(scan->targetlist);
	double		block_us = 0;	/* LiteRT's time per block row, all calls */
	int			block_rows = pgml_block_rows;
	CustomScan *cscan;
	ListCell   *lc;

	foreach(lc, scan->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		const NativeEntry *entry = pgml_scoring_call((Node *) tle->expr);
		TargetEntry *child_tle = flatCopyTargetEntry(tle);

		if (entry != NULL)
		{
			List	   *args = ((FuncExpr *) tle->expr)->args;
			double		row_us = pgml_call_row_us((FuncExpr *) tle->expr);

			if (row_us > 0)
				block_us += row_us;
			/* column (its input's too), answer, packed, funcid; ref, output, signature */
			private = lappend(private,
							  list_make4(makeInteger(tle->resno - 1), makeInteger(entry->answer),
										 makeInteger(entry->packed),
										 makeInteger((int) ((FuncExpr *) tle->expr)->funcid)));
			private = lappend(private,
							  list_make3(makeInteger(n_columns + list_length(extra)),
										 makeInteger(n_columns + list_length(extra) + 1),
										 makeInteger(n_columns + list_length(extra) + 2)));
			child_tle->expr = lsecond(args);	/* the input, in the call's column */
			extra = lappend(extra, linitial(args));
			extra = lappend(extra, lthird(args));
			extra = lappend(extra, lfourth(args));
		}
		child_tlist = lappend(child_tlist, child_tle);
	}

	/* a slow model's blocks are short: little memory for its activations, quick cancel */
	if (block_us > 0)
		block_rows = (int) Max(1, Min(block_rows, BLOCK_BUDGET_US / block_us));

	cscan = makeNode(CustomScan);
	cscan->methods = &block_scan_methods;
	cscan->custom_plans = list_make1(scan);
	cscan->custom_private = lcons(makeInteger(block_rows), private);
	cscan->scan.scanrelid = 0;
	cscan->scan.plan.startup_cost = scan->startup_cost;
	cscan->scan.plan.total_cost = scan->total_cost;
	cscan->scan.plan.plan_rows = scan->plan_rows;
	cscan->scan.plan.plan_width = scan->plan_width;
	cscan->scan.plan.parallel_safe = scan->parallel_safe;
	cscan->scan.plan.parallel_aware = false;
	/* the parameters the scan depends on: a rescan for new values reaches it */
	cscan->scan.plan.extParam = bms_copy(scan->extParam);
	cscan->scan.plan.allParam = bms_copy(scan->allParam);
	/* the scan tuple: the scan's entries (calls in their places), then the arguments */
	cscan->custom_scan_tlist = NIL;
	foreach(lc, scan->targetlist)
	{
		TargetEntry *tle = flatCopyTargetEntry(lfirst_node(TargetEntry, lc));

		tle->resjunk = false;
		cscan->custom_scan_tlist = lappend(cscan->custom_scan_tlist, tle);
	}
	foreach(lc, extra)
	{
		cscan->custom_scan_tlist = lappend(cscan->custom_scan_tlist,
										   makeTargetEntry(lfirst(lc),
														   list_length(cscan->custom_scan_tlist) + 1,
														   NULL, false));
		child_tlist = lappend(child_tlist,
							  makeTargetEntry(lfirst(lc), list_length(child_tlist) + 1,
											  NULL, true));
	}
	scan->targetlist = child_tlist;
	return (Plan *) cscan;
}

/* The scan's values an expression needs, and the scoring calls it makes, as columns. */
typedef struct Lifting
{
	List	   *tlist;			/* the scan's new target list */
	bool		always;			/* this node is evaluated for every row */
	int			n_calls;
} Lifting;

/*
 * NODE (of a scan's target list) computed over the block scan's scan tuple: each
 * scoring call evaluated for every row (not under CASE, COALESCE, AND/OR ...) and each
 * of the scan's values becomes a column the scan computes; the rest of the expression
 * is evaluated by the block scan, row by row.
 */
static Node *
lift(Node *node, Lifting *ctx)
{
	bool		always = ctx->always;
	Node	   *lifted;

	if (node == NULL)
		return NULL;
	if (IsA(node, Var))
		return (Node *) var_for(INDEX_VAR, entry_for(&ctx->tlist, (Expr *) node));
	if (always && pgml_scoring_call(node) != NULL)
	{
		ctx->n_calls++;
		return (Node *) var_for(INDEX_VAR, entry_for(&ctx->tlist, (Expr *) node));
	}
	ctx->always = always && evaluates_every_argument(node);
	lifted = expression_tree_mutator(node, lift, ctx);
	ctx->always = always;
	return lifted;
}

/*
 * SCAN with PgmlBlockScan on top, if its target list calls a per-row scoring function
 * for every row (as a whole entry or inside one); else SCAN.
 */
static Plan *
with_block_scan(Plan *scan)
{
	Lifting		ctx = {NIL, true, 0};
	List	   *outputs = NIL;
	ListCell   *lc;
	Plan	   *cscan;

	if (contain_subplans((Node *) scan->targetlist))
		return scan;
	foreach(lc, scan->targetlist)
	{
		TargetEntry *tle = flatCopyTargetEntry(lfirst_node(TargetEntry, lc));

		tle->expr = (Expr *) lift((Node *) tle->expr, &ctx);
		outputs = lappend(outputs, tle);
	}
	if (ctx.n_calls == 0)
		return scan;
	scan->targetlist = ctx.tlist;
	cscan = block_scan_over(scan);
	cscan->targetlist = outputs;	/* the scan's entries, over the scan tuple */
	return cscan;
}

static Node *replace_outer_var(Node *node, Plan *scan);

/* The calls in an aggregate's arguments, moved into the scan below it (its OUTER plan). */
typedef struct Pushing
{
	Plan	   *scan;
	bool		in_aggref;
} Pushing;

/*
 * NODE with every call of a per-row scorer in an aggregate's arguments (evaluated for
 * every input row: no FILTER, no conditional expression around it) replaced by a new
 * column of the scan below, which computes the call instead, so that the scan's block
 * scan scores it: SELECT count(pgml.classify(m, x)) FROM t, avg((... = label)::int).
 */
static Node *
push_calls(Node *node, Pushing *ctx)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Aggref))
	{
		Aggref	   *aggref = (Aggref *) node;
		Pushing		inner = {ctx->scan, true};

		if (aggref->aggfilter != NULL)
			return node;
		aggref = (Aggref *) copyObject(aggref);
		aggref->args = (List *) push_calls((Node *) aggref->args, &inner);
		return (Node *) aggref;
	}
	if (ctx->in_aggref && pgml_scoring_call(node) != NULL)
	{
		FuncExpr   *call = (FuncExpr *) copyObject(node);
		List	   *vars = pull_var_clause((Node *) call->args, 0);
		ListCell   *lc;

		/* the scan's own expressions for the Agg's references to its columns */
		foreach(lc, vars)
			if (((Var *) lfirst(lc))->varno != OUTER_VAR)
				return node;
		call->args = (List *) replace_outer_var((Node *) call->args, ctx->scan);
		/* the same call twice: computed once */
		return (Node *) var_for(OUTER_VAR, entry_for(&ctx->scan->targetlist, (Expr *) call));
	}
	/* only where every argument is evaluated for every row */
	if (evaluates_every_argument(node))
		return expression_tree_mutator(node, push_calls, ctx);
	return node;
}

static Node *
replace_outer_var(Node *node, Plan *scan)
{
	if (node != NULL && IsA(node, Var) && ((Var *) node)->varno == OUTER_VAR)
		return copyObject((Node *) list_nth_node(TargetEntry, scan->targetlist,
												 ((Var *) node)->varattno - 1)->expr);
	return expression_tree_mutator(node, replace_outer_var, scan);
}

static bool
is_heap_scan(Plan *plan)
{
	return IsA(plan, SeqScan) || IsA(plan, IndexScan) || IsA(plan, BitmapHeapScan)
		|| IsA(plan, TidScan) || IsA(plan, SampleScan);
}

/* PLAN and the plans below it, with block scans where they fit. */
static Plan *
with_block_scans(Plan *plan)
{
	ListCell   *lc;

	if (plan == NULL)
		return NULL;
	plan->lefttree = with_block_scans(plan->lefttree);
	plan->righttree = with_block_scans(plan->righttree);
	if (IsA(plan, Append))
		foreach(lc, ((Append *) plan)->appendplans)
			lfirst(lc) = with_block_scans(lfirst(lc));
	else if (IsA(plan, MergeAppend))
		foreach(lc, ((MergeAppend *) plan)->mergeplans)
			lfirst(lc) = with_block_scans(lfirst(lc));
	else if (IsA(plan, SubqueryScan))
		((SubqueryScan *) plan)->subplan = with_block_scans(((SubqueryScan *) plan)->subplan);
	else if (IsA(plan, Agg) && plan->lefttree != NULL && is_heap_scan(plan->lefttree))
	{
		Pushing		ctx = {plan->lefttree, false};

		plan->targetlist = (List *) push_calls((Node *) plan->targetlist, &ctx);
		plan->qual = (List *) push_calls((Node *) plan->qual, &ctx);
		plan->lefttree = with_block_scan(plan->lefttree);
	}
	return is_heap_scan(plan) ? with_block_scan(plan) : plan;
}

static PlannedStmt *
block_planner(Query *parse, const char *query_string, int cursor_options,
			  ParamListInfo bound_params)
{
	PlannedStmt *stmt = previous_planner
		? previous_planner(parse, query_string, cursor_options, bound_params)
		: standard_planner(parse, query_string, cursor_options, bound_params);
	ListCell   *lc;

	pgml_jit_without_scoring(stmt);
	pgml_jit_guard(stmt);
	if (pgml_block_rows <= 1 || (cursor_options & CURSOR_OPT_SCROLL))
		return stmt;
	stmt->planTree = with_block_scans(stmt->planTree);
	foreach(lc, stmt->subplans)
		lfirst(lc) = with_block_scans(lfirst(lc));
	return stmt;
}

/* -- Execution ----------------------------------------------------------------------- */

static Node *
create_block_scan_state(CustomScan *cscan)
{
	BlockScanState *state = (BlockScanState *) newNode(sizeof(BlockScanState),
													   T_CustomScanState);

	state->css.methods = &block_exec_methods;
	return (Node *) state;
}

static void
begin_block_scan(CustomScanState *node, EState *estate, int eflags)
{
	BlockScanState *state = (BlockScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	Plan	   *child = linitial(cscan->custom_plans);
	int			i;

	node->custom_ps = list_make1(ExecInitNode(child, estate, eflags));
	/* the block's rows, then two lists per call */
	state->n_calls = (list_length(cscan->custom_private) - 1) / 2;
	state->calls = palloc0(sizeof(BlockCall) * state->n_calls);
	state->capacity = Max(1, Min(pgml_block_rows, intVal(linitial(cscan->custom_private))));
	state->target = 1;
	state->rows = palloc0(sizeof(TupleTableSlot *) * state->capacity);
	state->tids = palloc0(sizeof(ItemPointerData) * state->capacity);
	/* the child's table is ours for WHERE CURRENT OF (search_plan_tree looks for it) */
	if (IsA(child, SeqScan) || IsA(child, IndexScan) || IsA(child, BitmapHeapScan)
		|| IsA(child, TidScan) || IsA(child, SampleScan))
		node->ss.ss_currentRelation = ((ScanState *) linitial(node->custom_ps))->ss_currentRelation;
	state->table = node->ss.ss_currentRelation ? RelationGetRelid(node->ss.ss_currentRelation)
		: InvalidOid;
	for (i = 0; i < state->capacity; i++)
		state->rows[i] = MakeSingleTupleTableSlot(ExecGetResultType(linitial(node->custom_ps)),
												  &TTSOpsMinimalTuple);
	state->block_context = AllocSetContextCreate(estate->es_query_cxt, "pgml block",
												 ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < state->n_calls; i++)
	{
		List	   *items = list_nth(cscan->custom_private, 1 + 2 * i),
				   *columns = list_nth(cscan->custom_private, 2 + 2 * i);
		BlockCall  *call = &state->calls[i];

		call->column = intVal(linitial(items));
		call->answer = (Answer) intVal(lsecond(items));
		call->packed = intVal(lthird(items)) != 0;
		fmgr_info((Oid) intVal(lfourth(items)), &call->function);
		call->args[0] = intVal(linitial(columns));
		call->args[1] = call->column;
		call->args[2] = intVal(lsecond(columns));
		call->args[3] = intVal(lthird(columns));
		call->out = palloc(sizeof(Datum) * state->capacity);
		call->out_null = palloc(sizeof(bool) * state->capacity);
		call->done = palloc(sizeof(bool) * state->capacity);
	}
}

/* A text or bytea argument of row R, or NULL. */
static void *
argument(TupleTableSlot *row, int column)
{
	bool		isnull;
	Datum		value = slot_getattr(row, column + 1, &isnull);

	return isnull ? NULL : DatumGetPointer(PG_DETOAST_DATUM_PACKED(value));
}

/* Where the child's current row is in its table (invalid if it scans none). */
static ItemPointerData
current_tid(BlockScanState *state)
{
	ScanState  *child = (ScanState *) linitial(state->css.custom_ps);
	ItemPointerData tid;

	ItemPointerSetInvalid(&tid);
	if (OidIsValid(state->table) && !TupIsNull(child->ss_ScanTupleSlot))
		tid = child->ss_ScanTupleSlot->tts_tid;
	return tid;
}

/* What ROW's inputs take detoasted (each call reads its own). */
static Size
input_bytes(BlockScanState *state, TupleTableSlot *row)
{
	Size		bytes = 0;

	for (int c = 0; c < state->n_calls; c++)
	{
		bool		isnull;
		Datum		value = slot_getattr(row, state->calls[c].args[1] + 1, &isnull);

		if (!isnull)
			bytes += toast_raw_datum_size(value);
	}
	return bytes;
}

/* The next block of the child's rows, each call scored over it where C can. */
static void
read_block(BlockScanState *state)
{
	PlanState  *child = linitial(state->css.custom_ps);
	MemoryContext old;
	int			c,
				r;

	Size		bytes = 0;
	Size		budget = (Size) work_mem * 1024;

	MemoryContextReset(state->block_context);
	state->n_rows = state->next = 0;
	/* a block holds its rows' inputs detoasted at once: work_mem bounds them too */
	while (state->n_rows < state->target && !state->exhausted && bytes < budget)
	{
		TupleTableSlot *slot = ExecProcNode(child);

		if (TupIsNull(slot))
			state->exhausted = true;
		else
		{
			state->tids[state->n_rows] = current_tid(state);
			ExecCopySlot(state->rows[state->n_rows], slot);
			bytes += input_bytes(state, state->rows[state->n_rows++]);
		}
	}
	state->target = Min(state->target * 2, state->capacity);
	if (state->n_rows == 0)
		return;
	old = MemoryContextSwitchTo(state->block_context);
	for (c = 0; c < state->n_calls; c++)
	{
		BlockCall  *call = &state->calls[c];
		TupleTableSlot *first = state->rows[0];
		bytea	  **inputs = palloc(sizeof(bytea *) * state->n_rows);
		bool		same = true;

		/* one model, output and signature for the block (model_ref: one per statement) */
		for (r = 1; r < state->n_rows && same; r++)
			for (int a = 0; a < CALL_ARGS; a++)
			{
				bool		null1,
							null2;
				Datum		v1,
							v2;

				if (a == 1)
					continue;
				v1 = slot_getattr(first, call->args[a] + 1, &null1);
				v2 = slot_getattr(state->rows[r], call->args[a] + 1, &null2);
				if (null1 != null2 || (!null1 && !datumIsEqual(v1, v2, false, -1)))
					same = false;
			}
		if (!same)
		{
			memset(call->done, 0, sizeof(bool) * state->n_rows);
			continue;
		}
		for (r = 0; r < state->n_rows; r++)
			inputs[r] = argument(state->rows[r], call->args[1]);
		native_score_block(call->answer, call->packed, argument(first, call->args[0]),
						   argument(first, call->args[2]), argument(first, call->args[3]),
						   inputs, state->n_rows, call->out, call->out_null, call->done);
	}
	MemoryContextSwitchTo(old);
}

/* CALL for row R by the per-row function itself (C, else PL/Python). */
static Datum
call_per_row(BlockCall *call, TupleTableSlot *row, bool *isnull)
{
	LOCAL_FCINFO(fc, CALL_ARGS);
	Datum		result;
	int			a;

	InitFunctionCallInfoData(*fc, &call->function, CALL_ARGS, InvalidOid, NULL, NULL);
	for (a = 0; a < CALL_ARGS; a++)
		fc->args[a].value = slot_getattr(row, call->args[a] + 1, &fc->args[a].isnull);
	result = FunctionCallInvoke(fc);
	*isnull = fc->isnull;
	return result;
}

/*
 * OUT: block row R (ROW) with its calls' answers, or those of the per-row function for
 * the calls C left (all of them for R < 0). It is also where the row came from, so
 * that WHERE CURRENT OF finds it.
 */
static TupleTableSlot *
store_row(BlockScanState *state, TupleTableSlot *row, int r, ItemPointer tid)
{
	ScanState  *node = &state->css.ss;
	TupleTableSlot *out = node->ss_ScanTupleSlot;
	MemoryContext old;
	int			c;

	ExecClearTuple(out);
	slot_getallattrs(row);
	memcpy(out->tts_values, row->tts_values, sizeof(Datum) * out->tts_tupleDescriptor->natts);
	memcpy(out->tts_isnull, row->tts_isnull, sizeof(bool) * out->tts_tupleDescriptor->natts);
	for (c = 0; c < state->n_calls; c++)
	{
		BlockCall  *call = &state->calls[c];

		if (r >= 0 && call->done[r])
		{
			out->tts_values[call->column] = call->out[r];
			out->tts_isnull[call->column] = call->out_null[r];
		}
		else
		{
			/* in the row's memory, reset by ExecScan before the next row */
			old = MemoryContextSwitchTo(node->ps.ps_ExprContext->ecxt_per_tuple_memory);
			out->tts_values[call->column] = call_per_row(call, row,
														 &out->tts_isnull[call->column]);
			MemoryContextSwitchTo(old);
		}
	}
	ExecStoreVirtualTuple(out);
	out->tts_tid = *tid;
	out->tts_tableOid = state->table;
	return out;
}

static TupleTableSlot *
next_row(ScanState *node)
{
	BlockScanState *state = (BlockScanState *) node;
	int			r;

	if (state->next >= state->n_rows)
	{
		read_block(state);
		if (state->n_rows == 0)
			return ExecClearTuple(node->ss_ScanTupleSlot);
	}
	r = state->next++;
	return store_row(state, state->rows[r], r, &state->tids[r]);
}

/*
 * Under UPDATE, DELETE or FOR UPDATE, a row another transaction changed meanwhile is
 * re-read (EvalPlanQual): the scan below returns its new version, scored here by the
 * per-row functions into SLOT (a block scan has no relation of its own to recheck).
 */
static bool
recheck_row(ScanState *node, TupleTableSlot *slot)
{
	BlockScanState *state = (BlockScanState *) node;
	TupleTableSlot *row = ExecProcNode(linitial(state->css.custom_ps));
	ItemPointerData tid;

	if (TupIsNull(row))
		return false;
	tid = current_tid(state);
	store_row(state, row, -1, &tid);
	return true;
}

static TupleTableSlot *
exec_block_scan(CustomScanState *node)
{
	return ExecScan(&node->ss, next_row, recheck_row);
}

static void
end_block_scan(CustomScanState *node)
{
	BlockScanState *state = (BlockScanState *) node;
	int			i;

	for (i = 0; i < state->capacity; i++)
		ExecDropSingleTupleTableSlot(state->rows[i]);
	ExecEndNode(linitial(node->custom_ps));
}

static void
rescan_block_scan(CustomScanState *node)
{
	BlockScanState *state = (BlockScanState *) node;

	state->n_rows = state->next = 0;
	state->exhausted = false;
	state->target = 1;
	ExecReScan(linitial(node->custom_ps));
}

/* EXPLAIN shows the most rows a block takes (pgml.block_rows, fewer for a slow model). */
static void
explain_block_scan(CustomScanState *node, List *ancestors, ExplainState *es)
{
	ExplainPropertyInteger("Block Rows", NULL, ((BlockScanState *) node)->capacity, es);
}

void
block_scan_init(void)
{
	block_scan_methods.CustomName = "PgmlBlockScan";
	block_scan_methods.CreateCustomScanState = create_block_scan_state;
	RegisterCustomScanMethods(&block_scan_methods);

	block_exec_methods.CustomName = "PgmlBlockScan";
	block_exec_methods.BeginCustomScan = begin_block_scan;
	block_exec_methods.ExecCustomScan = exec_block_scan;
	block_exec_methods.EndCustomScan = end_block_scan;
	block_exec_methods.ReScanCustomScan = rescan_block_scan;
	block_exec_methods.ExplainCustomScan = explain_block_scan;

	previous_planner = planner_hook;
	planner_hook = block_planner;
}
