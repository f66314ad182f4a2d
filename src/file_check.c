/*
 * file_check.c: this server's copy of a version's files, checked before first use.
 *
 * The files are written once from the pgml tables (pgml_ext.c, each checked as it is
 * written), then mapped by LiteRT in every backend that scores the version. A file
 * damaged afterwards (disk or file-system damage, a bad restore) would crash each new
 * backend inside LiteRT. So before a backend first uses a version, model.json must
 * hash to the directory's identity and every LiteRT flatbuffer to the checksum
 * model.json gives it. The SHA-256 of a large model takes tens of ms: once a file has
 * been hashed sound, "<file>.sound" records its identity (device, inode, size, mtime,
 * ctime), and a backend that finds the identity unchanged does not hash it again.
 * Writing to a file changes its ctime, which no one can set back.
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pgml_ext.h"

/* The SHA-256 of the file at PATH in hex, or NULL if it cannot be read. */
static char *
file_sha256(const char *path)
{
	static const char hex[] = "0123456789abcdef";
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *out = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	char	   *buffer = palloc(1 << 20);
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	bool		ok = fd >= 0 && ctx != NULL && pg_cryptohash_init(ctx) == 0;

	while (ok)
	{
		ssize_t		got = read(fd, buffer, 1 << 20);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
		{
			ok = got == 0;
			break;
		}
		ok = pg_cryptohash_update(ctx, (uint8 *) buffer, got) == 0;
	}
	ok = ok && pg_cryptohash_final(ctx, digest, sizeof(digest)) == 0;
	if (fd >= 0)
		CloseTransientFile(fd);
	if (ctx != NULL)
		pg_cryptohash_free(ctx);
	pfree(buffer);
	if (!ok)
		return NULL;
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[PG_SHA256_DIGEST_LENGTH * 2] = '\0';
	return out;
}

/* What identifies the file at PATH's contents short of reading them; NULL if none. */
static char *
file_identity(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return NULL;
	return psprintf("%lu %lu %lld %lld.%09ld %lld.%09ld\n", (unsigned long) st.st_dev,
					(unsigned long) st.st_ino, (long long) st.st_size,
					(long long) st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
					(long long) st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

/* Whether MARKER holds exactly IDENTITY. */
static bool
marker_says(const char *marker, const char *identity)
{
	char		held[256];
	int			fd = OpenTransientFile(marker, O_RDONLY | PG_BINARY);
	ssize_t		got;

	if (fd < 0)
		return false;
	got = read(fd, held, sizeof(held) - 1);
	CloseTransientFile(fd);
	if (got <= 0)
		return false;
	held[got] = '\0';
	return strcmp(held, identity) == 0;
}

/* MARKER records IDENTITY (best effort: without it, the next backend hashes again). */
static void
write_marker(const char *marker, const char *identity)
{
	char	   *tmp = psprintf("%s.tmp%d", marker, MyProcPid);
	int			fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	bool		ok;

	if (fd < 0)
		return;
	ok = write(fd, identity, strlen(identity)) == (ssize_t) strlen(identity);
	CloseTransientFile(fd);
	if (!ok || rename(tmp, marker) != 0)
		unlink(tmp);
}

/* Whether the file at PATH has the SHA-256 CHECKSUM (by its marker, or hashed). */
static bool
file_sound(const char *path, const char *checksum)
{
	char	   *identity = file_identity(path);
	char	   *marker = psprintf("%s.sound", path);
	char	   *hash;

	if (identity == NULL)
		return false;
	if (marker_says(marker, identity))
		return true;
	hash = file_sha256(path);
	if (hash == NULL || strcmp(hash, checksum) != 0)
		return false;
	write_marker(marker, identity);
	return true;
}

/*
 * NULL if the files of version directory DIR (named <id>-<identity>) are sound, else
 * the name of the first that is not. Run inside SPI (pgml_ext.c's resolve).
 */
const char *
pgml_damaged_file(const char *dir)
{
	const char *identity = strchr(strrchr(dir, '/'), '-');
	char	   *json = psprintf("%s/model.json", dir);
	char	   *hash = file_sha256(json);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	char	   *contents;
	int			fd;
	struct stat st;

	if (identity == NULL || hash == NULL || strcmp(hash, identity + 1) != 0
		|| stat(json, &st) != 0 || st.st_size > 64 * 1024 * 1024)
		return "model.json";
	/* model.json hashes to the directory's name: its checksums are the tables' */
	contents = palloc(st.st_size + 1);
	fd = OpenTransientFile(json, O_RDONLY | PG_BINARY);
	if (fd < 0 || read(fd, contents, st.st_size) != st.st_size)
	{
		if (fd >= 0)
			CloseTransientFile(fd);
		return "model.json";
	}
	CloseTransientFile(fd);
	contents[st.st_size] = '\0';
	args[0] = CStringGetTextDatum(contents);
	if (SPI_execute_with_args("SELECT f.value->>'file', f.value->>'checksum' "
							  "FROM jsonb_each($1::jsonb->'litert') f",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgml: could not read the checksums of \"%s\"", json);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *file = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *checksum = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		if (file == NULL || checksum == NULL || strchr(file, '/') != NULL
			|| !file_sound(psprintf("%s/%s", dir, file), checksum))
			return file ? file : "a LiteRT flatbuffer";
	}
	return NULL;
}
