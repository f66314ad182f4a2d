/*
 * stats.c: the counters behind pgml.stats, per database and model version, across all
 * backends and parallel workers: scoring calls, rows (answered in C or by PL/Python),
 * errors, time, model loads and their time, last use.
 *
 * Like pg_stat_statements: a hash table in shared memory (it needs pgml_ext in
 * shared_preload_libraries), guarded by one LWLock, each entry's counters by a spinlock.
 * The hot path only adds to a small backend-local array (pending); that is added to
 * shared memory at the end of each transaction (commit or abort, in parallel workers
 * too) and after each second of scoring, so a long statement shows its progress.
 * Without shared memory, the same counters are kept for this backend alone, and
 * pgml.stats says so.
 *
 * Nothing here raises an ERROR on the counting path: PL/Python counts its rows through
 * ctypes (pgml_ext.indb.stats), and a longjmp must never cross Python frames. A full
 * table drops the counts of versions it has no room for (pgml.stats_max), and counts
 * how many it dropped.
 */
#include "postgres.h"

#include "access/xact.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pgml_ext.h"

/* Hashed as bytes (HASH_BLOBS): no padding, every byte set. */
typedef struct StatsKey
{
	int64		version_id;		/* pgml.model_versions.id */
	Oid			dbid;
	Oid			zero;
} StatsKey;

typedef struct StatsCounters
{
	int64		calls;			/* calls of the scoring functions (a batch is one) */
	int64		c_rows;			/* rows answered in C */
	int64		fallback_rows;	/* rows answered by PL/Python */
	int64		errors;			/* calls that raised an ERROR */
	double		total_ms;		/* time in the scoring calls */
	int64		loads;			/* models made ready (C plans, PL/Python models) */
	double		load_ms;
	TimestampTz last_used;
} StatsCounters;

typedef struct StatsEntry
{
	StatsKey	key;
	slock_t		mutex;
	StatsCounters counters;
} StatsEntry;

typedef struct StatsShared
{
	LWLock	   *lock;
	int64		dropped;		/* counts that found no room (under lock) */
} StatsShared;


static StatsShared *shared = NULL;
static HTAB *shared_entries = NULL;
static HTAB *local_entries = NULL;	/* no shared memory: this backend's totals */
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type previous_shmem_request = NULL;
#endif
static shmem_startup_hook_type previous_shmem_startup = NULL;

/* Counts not yet added to the table, by version. */
#define PENDING_VERSIONS 16
#define PENDING_FLUSH_MS 1000.0

typedef struct Pending
{
	int64		version_id;
	StatsCounters counters;
} Pending;

static Pending pending[PENDING_VERSIONS];
static int	n_pending = 0;
static double pending_ms = 0.0;

static Size
shared_size(void)
{
	return add_size(MAXALIGN(sizeof(StatsShared)),
					hash_estimate_size(pgml_stats_max, sizeof(StatsEntry)));
}

#if PG_VERSION_NUM >= 150000
static void
stats_shmem_request(void)
{
	if (previous_shmem_request)
		previous_shmem_request();
	RequestAddinShmemSpace(shared_size());
	RequestNamedLWLockTranche("pgml_ext", 1);
}
#endif

static void
stats_shmem_startup(void)
{
	HASHCTL		info;
	bool		found;

	if (previous_shmem_startup)
		previous_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("pgml_ext stats", sizeof(StatsShared), &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("pgml_ext"))->lock;
		shared->dropped = 0;
	}
	info.keysize = sizeof(StatsKey);
	info.entrysize = sizeof(StatsEntry);
	shared_entries = ShmemInitHash("pgml_ext stats entries", pgml_stats_max, pgml_stats_max,
								   &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

static void
add_counters(StatsCounters *to, const StatsCounters *from, TimestampTz now)
{
	to->calls += from->calls;
	to->c_rows += from->c_rows;
	to->fallback_rows += from->fallback_rows;
	to->errors += from->errors;
	to->total_ms += from->total_ms;
	to->loads += from->loads;
	to->load_ms += from->load_ms;
	to->last_used = now;
}

/* Adds P to its shared entry if it has one (or may make one: EXCLUSIVE); false if not. */
static bool
add_shared(const Pending *p, TimestampTz now, bool exclusive)
{
	StatsKey	key = {p->version_id, MyDatabaseId, 0};
	StatsEntry *entry;
	bool		found;

	/*
	 * A shared hash grows past its size into the server's spare shared memory, which
	 * every backend needs (locks, temp tables): pgml.stats_max is the bound.
	 */
	if (exclusive && hash_get_num_entries(shared_entries) >= pgml_stats_max)
		entry = hash_search(shared_entries, &key, HASH_FIND, &found);
	else
		entry = hash_search(shared_entries, &key, exclusive ? HASH_ENTER_NULL : HASH_FIND,
							&found);
	if (entry == NULL)
		return false;
	if (!found)
	{
		SpinLockInit(&entry->mutex);
		memset(&entry->counters, 0, sizeof(StatsCounters));
	}
	SpinLockAcquire(&entry->mutex);
	add_counters(&entry->counters, &p->counters, now);
	SpinLockRelease(&entry->mutex);
	return true;
}

static void
add_local(const Pending *p, TimestampTz now)
{
	StatsKey	key = {p->version_id, MyDatabaseId, 0};
	StatsEntry *entry;
	bool		found;

	if (local_entries == NULL)
	{
		HASHCTL		info;

		info.keysize = sizeof(StatsKey);
		info.entrysize = sizeof(StatsEntry);
		info.hcxt = TopMemoryContext;
		local_entries = hash_create("pgml_ext stats (this backend)", 16, &info,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (hash_get_num_entries(local_entries) >= pgml_stats_max)
		entry = hash_search(local_entries, &key, HASH_FIND, &found);
	else
		entry = hash_search(local_entries, &key, HASH_ENTER_NULL, &found);
	if (entry == NULL)
		return;
	if (!found)
		memset(&entry->counters, 0, sizeof(StatsCounters));
	add_counters(&entry->counters, &p->counters, now);
}

/* Adds the pending counts to the table (shared, or this backend's). */
static void
flush(void)
{
	TimestampTz now;
	bool		missing = false;
	int			i;

	if (n_pending == 0)
		return;
	now = GetCurrentTimestamp();
	if (shared == NULL)
		for (i = 0; i < n_pending; i++)
			add_local(&pending[i], now);
	else
	{
		bool		done[PENDING_VERSIONS];

		LWLockAcquire(shared->lock, LW_SHARED);
		for (i = 0; i < n_pending; i++)
			missing |= !(done[i] = add_shared(&pending[i], now, false));
		LWLockRelease(shared->lock);
		if (missing)
		{
			LWLockAcquire(shared->lock, LW_EXCLUSIVE);
			for (i = 0; i < n_pending; i++)
				if (!done[i] && !add_shared(&pending[i], now, true))
					shared->dropped++;
			LWLockRelease(shared->lock);
		}
	}
	n_pending = 0;
	pending_ms = 0.0;
}

/* The pending counters of VERSION_ID, made if need be (flushing when full). */
static StatsCounters *
pending_for(int64 version_id)
{
	static int	last = 0;
	Pending    *p;

	if (last < n_pending && pending[last].version_id == version_id)
		return &pending[last].counters;
	for (last = 0; last < n_pending; last++)
		if (pending[last].version_id == version_id)
			return &pending[last].counters;
	if (n_pending == PENDING_VERSIONS)
		flush();
	last = n_pending++;
	p = &pending[last];
	p->version_id = version_id;
	memset(&p->counters, 0, sizeof(StatsCounters));
	return &p->counters;
}

/* The version id a model reference ("<id>-<identity>") names, or -1. Never raises. */
int64
pgml_ref_version(const char *ref, Size len)
{
	int64		id = 0;
	Size		i;

	for (i = 0; i < len && ref[i] >= '0' && ref[i] <= '9' && i < 18; i++)
		id = id * 10 + (ref[i] - '0');
	return (i > 0 && i < len && ref[i] == '-') ? id : -1;
}

void
pgml_stats_count_version(int64 version_id, int64 calls, int64 c_rows, int64 fallback_rows,
						 int64 errors, double ms)
{
	StatsCounters *c;

	if (version_id < 0 || !pgml_track_stats)
		return;
	c = pending_for(version_id);
	c->calls += calls;
	c->c_rows += c_rows;
	c->fallback_rows += fallback_rows;
	c->errors += errors;
	c->total_ms += ms;
	pending_ms += ms;
	if (pending_ms >= PENDING_FLUSH_MS)
		flush();
}

void
pgml_stats_load_version(int64 version_id, double ms)
{
	StatsCounters *c;

	if (version_id < 0 || !pgml_track_stats)
		return;
	c = pending_for(version_id);
	c->loads++;
	c->load_ms += ms;
}

/*
 * For PL/Python (ctypes): the same, by model reference. Only a reference that
 * pgml_internal.model_ref handed out in this statement counts: a forged one names no
 * version (and would make entries for versions that do not exist).
 */
void
pgml_stats_count(const char *ref, Size len, int64 calls, int64 fallback_rows, int64 errors,
				 double ms)
{
	if (pgml_ref_issued(ref, len))
		pgml_stats_count_version(pgml_ref_version(ref, len), calls, 0, fallback_rows, errors,
								 ms);
}

void
pgml_stats_load(const char *ref, Size len, double ms)
{
	if (pgml_ref_issued(ref, len))
		pgml_stats_load_version(pgml_ref_version(ref, len), ms);
}

static void
stats_at_transaction_end(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			flush();
			break;
		default:
			break;
	}
}

void
stats_init(void)
{
	RegisterXactCallback(stats_at_transaction_end, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
#if PG_VERSION_NUM >= 150000
	previous_shmem_request = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
#else
	RequestAddinShmemSpace(shared_size());
	RequestNamedLWLockTranche("pgml_ext", 1);
#endif
	previous_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

/* The table of counts (shared, or this backend's), this backend's pending counts in it. */
static HTAB *
counts_table(void)
{
	flush();					/* first: it may make the local table */
	return shared != NULL ? shared_entries : local_entries;
}

PG_FUNCTION_INFO_V1(pgml_stats_entries);

/*
 * pgml_internal.stats_entries(): this database's counters, one row per version. This
 * backend's pending counts are added first, so a session sees its own calls at once.
 */
Datum
pgml_stats_entries(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HTAB	   *table;
	HASH_SEQ_STATUS scan;
	StatsEntry *entry;

	table = counts_table();
	if (shared == NULL)
		ereport(WARNING,
				(errmsg("pgml.stats counts this backend's scoring only"),
				 errdetail("pgml_ext is not in shared_preload_libraries, so there is no "
						   "shared memory to count the calls of other sessions and of "
						   "parallel workers in."),
				 errhint("Add pgml_ext to shared_preload_libraries and restart the server.")));
	InitMaterializedSRF(fcinfo, 0);
	if (table == NULL)
		return (Datum) 0;
	if (shared != NULL)
		LWLockAcquire(shared->lock, LW_SHARED);
	hash_seq_init(&scan, table);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		Datum		values[9];
		bool		nulls[9] = {0};
		StatsCounters c;

		if (entry->key.dbid != MyDatabaseId)
			continue;
		if (shared != NULL)
		{
			SpinLockAcquire(&entry->mutex);
			c = entry->counters;
			SpinLockRelease(&entry->mutex);
		}
		else
			c = entry->counters;
		values[0] = Int64GetDatum(entry->key.version_id);
		values[1] = Int64GetDatum(c.calls);
		values[2] = Int64GetDatum(c.c_rows);
		values[3] = Int64GetDatum(c.fallback_rows);
		values[4] = Int64GetDatum(c.errors);
		values[5] = Float8GetDatum(c.total_ms);
		values[6] = Int64GetDatum(c.loads);
		values[7] = Float8GetDatum(c.load_ms);
		values[8] = TimestampTzGetDatum(c.last_used);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (shared != NULL)
		LWLockRelease(shared->lock);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(pgml_stats_reset_entries);

/* pgml_internal.stats_reset(version_ids bigint[] or NULL: all): entries of this database removed. */
Datum
pgml_stats_reset_entries(PG_FUNCTION_ARGS)
{
	HTAB	   *table;
	ArrayType  *ids = PG_ARGISNULL(0) ? NULL : PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *values = NULL;
	bool	   *nulls;
	int			n = 0;
	int64		removed = 0;
	HASH_SEQ_STATUS scan;
	StatsEntry *entry;

	table = counts_table();
	if (ids != NULL)
		deconstruct_array(ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &values, &nulls, &n);
	if (table == NULL)
		PG_RETURN_INT64(0);
	if (shared != NULL)
		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	hash_seq_init(&scan, table);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		bool		named = ids == NULL;

		for (int i = 0; i < n && !named; i++)
			named = !nulls[i] && DatumGetInt64(values[i]) == entry->key.version_id;
		if (entry->key.dbid == MyDatabaseId && named)
		{
			hash_search(table, &entry->key, HASH_REMOVE, NULL);
			removed++;
		}
	}
	if (shared != NULL)
	{
		if (ids == NULL)
			shared->dropped = 0;
		LWLockRelease(shared->lock);
	}
	PG_RETURN_INT64(removed);
}

PG_FUNCTION_INFO_V1(pgml_stats_dropped);

/* Counts dropped for want of room since the last full reset; NULL without shared memory. */
Datum
pgml_stats_dropped(PG_FUNCTION_ARGS)
{
	int64		dropped;

	if (shared == NULL)
		PG_RETURN_NULL();
	LWLockAcquire(shared->lock, LW_SHARED);
	dropped = shared->dropped;
	LWLockRelease(shared->lock);
	PG_RETURN_INT64(dropped);
}
