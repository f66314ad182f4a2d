/*
 * row_support.c: the planner's view of scoring a row by column name.
 *
 * pgml.predict/classify/predict_class/predict_value(model, row, ...) are PL/pgSQL (SQL
 * functions cannot take a record), whose body is the function's bytea form over
 * pgml.example(model, row, signature); pgml.example(model, row, signature) is
 * pgml_internal.row_example(pgml_internal.model_ref(model), row, signature). A PL/pgSQL
 * call is opaque to the planner: each row would be scored by its own LiteRT call. This
 * SUPPORT function (SupportRequestSimplify) hands the planner those bodies as
 * expressions instead, which it simplifies further (the bytea form is a SQL function,
 * inlined into the C scorer's call): the row is built into its Example in C and scored
 * over blocks of rows (block_scan.c), in parallel plans too. Same functions, so the
 * same answers and errors; a call the planner never sees (fmgr) runs the PL/pgSQL body.
 */
#include "postgres.h"

#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/supportnodes.h"
#include "nodes/value.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* The function SCHEMA.NAME taking ARGTYPES (N of them), or InvalidOid. */
static Oid
function_oid(const char *schema, const char *name, int n, Oid *argtypes)
{
	return LookupFuncName(list_make2(makeString((char *) schema), makeString((char *) name)),
						  n, argtypes, true);
}

/* A call of FUNCID (returning RESULT) with ARGS, as the parser makes one. */
static Expr *
call_of(Oid funcid, Oid result, List *args, FuncExpr *like)
{
	return (Expr *) makeFuncExpr(funcid, result, args, like->funccollid, like->inputcollid,
								 COERCE_EXPLICIT_CALL);
}

/* The position of PROC's argument named NAME, or -1. */
static int
argument_named(HeapTuple proc, const char *name)
{
	Datum	   *names;
	int			n;
	bool		isnull;
	Datum		datum = SysCacheGetAttr(PROCOID, proc, Anum_pg_proc_proargnames, &isnull);

	if (isnull)
		return -1;
	deconstruct_array(DatumGetArrayTypeP(datum), TEXTOID, -1, false, TYPALIGN_INT,
					  &names, NULL, &n);
	for (int i = 0; i < n; i++)
		if (strcmp(TextDatumGetCString(names[i]), name) == 0)
			return i;
	return -1;
}

/* CALL (of pgml.example(model, row, signature)) as its body, or NULL. */
static Expr *
example_body(FuncExpr *call)
{
	Oid			text_arg = TEXTOID;
	Oid			row_args[3] = {TEXTOID, RECORDOID, TEXTOID};
	Oid			model_ref = function_oid("pgml_internal", "model_ref", 1, &text_arg);
	Oid			row_example = function_oid("pgml_internal", "row_example", 3, row_args);

	if (!OidIsValid(model_ref) || !OidIsValid(row_example))
		return NULL;
	return call_of(row_example, BYTEAOID,
				   list_make3(call_of(model_ref, TEXTOID, list_make1(linitial(call->args)), call),
							  lsecond(call->args), lthird(call->args)),
				   call);
}

/* CALL (of pgml.F(model, row, ...)) as the bytea form of F over pgml.example, or NULL. */
static Expr *
scoring_body(FuncExpr *call, HeapTuple proc, Form_pg_proc form)
{
	Oid			argtypes[FUNC_MAX_ARGS];
	Oid			example_args[3] = {TEXTOID, RECORDOID, TEXTOID};
	Oid			example = function_oid("pgml", "example", 3, example_args);
	int			signature = argument_named(proc, "signature");
	Oid			bytea_form;
	List	   *args;

	memcpy(argtypes, form->proargtypes.values, sizeof(Oid) * form->pronargs);
	argtypes[1] = BYTEAOID;
	bytea_form = function_oid("pgml", NameStr(form->proname), form->pronargs, argtypes);
	if (!OidIsValid(example) || !OidIsValid(bytea_form) || signature < 0
		|| signature >= list_length(call->args))
		return NULL;
	args = list_copy(call->args);
	lsecond(args) = call_of(example, BYTEAOID,
							list_make3(linitial(args), lsecond(args),
									   list_nth(args, signature)),
							call);
	return call_of(bytea_form, call->funcresulttype, args, call);
}

PG_FUNCTION_INFO_V1(pgml_row_support);

/* SUPPORT function of the functions taking a row: see above. */
Datum
pgml_row_support(PG_FUNCTION_ARGS)
{
	Node	   *request = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSimplify *simplify;
	FuncExpr   *call;
	HeapTuple	proc;
	Form_pg_proc form;
	Expr	   *body = NULL;

	if (!IsA(request, SupportRequestSimplify))
		PG_RETURN_POINTER(NULL);
	simplify = (SupportRequestSimplify *) request;
	call = simplify->fcall;
	/* the arguments are positional here, defaults filled in: (model, row, ...) */
	if (list_length(call->args) < 3 || exprType(lsecond(call->args)) == BYTEAOID)
		PG_RETURN_POINTER(NULL);
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(call->funcid));
	if (!HeapTupleIsValid(proc))
		PG_RETURN_POINTER(NULL);
	form = (Form_pg_proc) GETSTRUCT(proc);
	if (form->pronargs >= 3 && form->proargtypes.values[1] == RECORDOID)
		body = strcmp(NameStr(form->proname), "example") == 0 ? example_body(call)
			: scoring_body(call, proc, form);
	ReleaseSysCache(proc);
	if (body == NULL)
		PG_RETURN_POINTER(NULL);
	/* the body simplified in turn: pgml.example's support, the SQL form inlined */
	PG_RETURN_POINTER(eval_const_expressions(simplify->root, (Node *) body));
}
