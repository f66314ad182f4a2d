/*
 * compat.h: what differs between the PostgreSQL versions pgml_ext builds against,
 * 14 to 17, in one place. Only 15 is built and tested here (Debian 12 has no other);
 * the rest follows each release's API changes.
 */
#ifndef PGML_COMPAT_H
#define PGML_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 140000
#error "pgml_ext needs PostgreSQL 14 or later (common/cryptohash.h; 13 is out of support since November 2025)"
#endif

/* 16 moved the varlena macros (VARDATA, VARSIZE_ANY ...) out of postgres.h */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/* 15 added InitMaterializedSRF: a set-returning function's tuplestore and row type */
#if PG_VERSION_NUM < 150000
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/tuplestore.h"

static inline void
InitMaterializedSRF(FunctionCallInfo fcinfo, bits32 flags)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	TupleDesc	desc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo)
		|| !(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("set-valued function called in context that cannot accept a set")));
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = CreateTupleDescCopy(desc);
	MemoryContextSwitchTo(old);
}
#endif

#endif
