/* example.h: features of a serialized tf.Example, read without allocating (example.c). */
#ifndef PGML_EXAMPLE_H
#define PGML_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* A Feature's kind: its field number (BytesList 1, FloatList 2, Int64List 3). */
#define PGML_BYTES 1
#define PGML_FLOATS 2
#define PGML_INT64S 3

#define PGML_MAX_FEATURES 64

/* One value of a bytes_list: where it is in the serialized Example. */
typedef struct PgmlBytes
{
	const uint8_t *data;
	size_t		len;
} PgmlBytes;

typedef struct PgmlFeature
{
	const char *name;			/* the feature's key (NUL-terminated) */
	int			kind;			/* PGML_BYTES, PGML_FLOATS or PGML_INT64S */
	size_t		count;			/* the values it must have */
	void	   *values;			/* room for COUNT PgmlBytes, floats or int64s */
	int			found;			/* set: 1 if the Example has it, 0 if not */
} PgmlFeature;

/*
 * 1 if DATA is a tf.Example of the plain form in which each of the N FEATURES is either
 * absent (found = 0) or of its KIND with exactly COUNT values (copied to VALUES, floats
 * as little-endian bytes, int64s decoded, bytes as pointers into DATA); 0 for anything else, which the caller leaves
 * to upb. With ONLY (and N = 1), an Example whose single feature has another name
 * stands for it (pgml_ext.indb.examples.DenseReader's rule for one-input models).
 */
extern int	pgml_example_read(const uint8_t *data, size_t len, PgmlFeature *features, int n,
							  int only);

#endif
