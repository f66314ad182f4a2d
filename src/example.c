/*
 * example.c: the features of a serialized tf.train.Example, read once.
 *
 * The native scorer needs the features that feed a model's inputs: float_lists copied,
 * int64_lists decoded, each straight into the runtime's input row, bytes_lists pointed
 * at (for the lookups that turn them into ids). This walks the wire
 * format once, allocates nothing (memory O(1), whatever the input) and answers only
 * for Examples written the one plain way every writer uses: known fields with their
 * own wire types, each message field at most once, minimal varints, UTF-8 keys, packed
 * lists. Anything else, valid or not, gives "no answer" and the row goes to PL/Python,
 * where upb (the reference) parses it and reports what is wrong. So an input this file
 * accepts is one upb accepts, with the same values; tests/test_example_parser.py checks
 * that on generated inputs.
 *
 * No PostgreSQL headers: the differential fuzz builds this file on its own.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "example.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "example.c copies little-endian floats as they are: little-endian hosts only"
#endif

enum
{
	WIRE_VARINT = 0,
	WIRE_I64 = 1,
	WIRE_LEN = 2,
	WIRE_I32 = 5
};

typedef struct Reader
{
	const uint8_t *p;
	const uint8_t *end;
} Reader;

/* A varint in its shortest form (at most MAX_BYTES bytes); false otherwise. */
static bool
read_varint(Reader *r, int max_bytes, uint64_t *value)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < max_bytes && r->p < r->end; i++)
	{
		uint8_t		b = *r->p++;

		v |= (uint64_t) (b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0)
		{
			/* shortest form: a last byte of 0 only for the value 0 itself */
			if (b == 0 && i > 0)
				return false;
			/* the tenth byte of a 64-bit varint carries one bit */
			if (i == 9 && b > 1)
				return false;
			*value = v;
			return true;
		}
	}
	return false;
}

/* The next field's number and wire type; false at a bad or non-minimal tag. */
static bool
read_tag(Reader *r, uint32_t *field, int *wire)
{
	uint64_t	tag;

	if (!read_varint(r, 5, &tag) || tag > UINT32_MAX)
		return false;
	*field = (uint32_t) (tag >> 3);
	*wire = (int) (tag & 7);
	/* field numbers are 1 .. 2^29 - 1 */
	return *field >= 1 && *field < (1u << 29);
}

/* A length-delimited field's body, which must fit in what is left. */
static bool
read_len(Reader *r, Reader *body)
{
	uint64_t	len;

	if (!read_varint(r, 10, &len) || len > (uint64_t) (r->end - r->p))
		return false;
	body->p = r->p;
	body->end = r->p + len;
	r->p = body->end;
	return true;
}

/* RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool
valid_utf8(const uint8_t *s, const uint8_t *end)
{
	while (s < end)
	{
		uint8_t		c = *s;
		int			n;
		uint8_t		lo = 0x80,
					hi = 0xbf;

		if (c < 0x80)
		{
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1;
		else if (c >= 0xe0 && c <= 0xef)
		{
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		}
		else if (c >= 0xf0 && c <= 0xf4)
		{
			n = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		}
		else
			return false;
		if (end - s <= n || s[1] < lo || s[1] > hi)
			return false;
		for (int i = 2; i <= n; i++)
			if ((s[i] & 0xc0) != 0x80)
				return false;
		s += n + 1;
	}
	return true;
}

/* A list message (BytesList 1, FloatList 2, Int64List 3) of the plain form. */
static bool
check_list(Reader body, int kind, Reader *values)
{
	uint32_t	field;
	int			wire;
	bool		seen = false;

	values->p = values->end = NULL;
	if (kind == PGML_BYTES)
		*values = body;			/* bytes: any, repeated; copy_values walks them again */
	while (body.p < body.end)
	{
		Reader		value;

		if (!read_tag(&body, &field, &wire) || field != 1 || wire != WIRE_LEN
			|| !read_len(&body, &value))
			return false;
		if (kind == PGML_BYTES)
			continue;
		if (seen)
			return false;		/* packed lists: one run */
		seen = true;
		*values = value;
		if (kind == PGML_FLOATS)
		{
			if ((value.end - value.p) % 4 != 0)
				return false;
		}
		else
		{
			uint64_t	v;

			while (value.p < value.end)
				if (!read_varint(&value, 10, &v))
					return false;
		}
	}
	return true;
}

/* A Feature: at most one of its three lists, once. KIND: 0 (none) or 1..3. */
static bool
check_feature(Reader body, int *kind, Reader *values)
{
	uint32_t	field;
	int			wire;

	*kind = 0;
	values->p = values->end = NULL;
	while (body.p < body.end)
	{
		Reader		list;

		if (!read_tag(&body, &field, &wire) || field < 1 || field > 3 || wire != WIRE_LEN
			|| *kind != 0 || !read_len(&body, &list) || !check_list(list, (int) field, values))
			return false;
		*kind = (int) field;
	}
	return true;
}

/* A map entry: key (1) and value (2), each at most once; the key UTF-8. */
static bool
check_entry(Reader body, Reader *key, int *kind, Reader *values)
{
	uint32_t	field;
	int			wire;
	bool		have_key = false,
				have_value = false;

	key->p = key->end = body.p;
	*kind = 0;
	values->p = values->end = NULL;
	while (body.p < body.end)
	{
		Reader		part;

		if (!read_tag(&body, &field, &wire) || wire != WIRE_LEN || !read_len(&body, &part))
			return false;
		if (field == 1 && !have_key)
		{
			if (!valid_utf8(part.p, part.end))
				return false;
			*key = part;
			have_key = true;
		}
		else if (field == 2 && !have_value)
		{
			if (!check_feature(part, kind, values))
				return false;
			have_value = true;
		}
		else
			return false;
	}
	return true;
}

/* The values of a checked list (check_list) into F->values; false unless F->count of them. */
static bool
copy_values(PgmlFeature *f, Reader values)
{
	size_t		n = 0;

	if (f->kind == PGML_BYTES)
	{
		/* checked by check_list: every entry is field 1, length-delimited, in bounds */
		while (values.p != NULL && values.p < values.end)
		{
			uint32_t	field;
			int			wire;
			Reader		value;

			if (n == f->count || !read_tag(&values, &field, &wire) || !read_len(&values, &value))
				return false;
			((PgmlBytes *) f->values)[n].data = value.p;
			((PgmlBytes *) f->values)[n++].len = (size_t) (value.end - value.p);
		}
		return n == f->count;
	}
	if (f->kind == PGML_FLOATS)
	{
		if (values.p == NULL || (size_t) (values.end - values.p) != f->count * sizeof(float))
			return false;
		memcpy(f->values, values.p, f->count * sizeof(float));
		return true;
	}
	while (values.p != NULL && values.p < values.end)
	{
		uint64_t	v;

		if (n == f->count || !read_varint(&values, 10, &v))
			return false;
		/* int64 on the wire is the value's two's complement, not zigzag */
		memcpy((int64_t *) f->values + n++, &v, sizeof(v));
	}
	return n == f->count;
}

int
pgml_example_read(const uint8_t *data, size_t len, PgmlFeature *features, int n, int only)
{
	Reader		r = {data, data + len},
				map = {NULL, NULL},
				last = {NULL, NULL};
	uint32_t	field;
	int			wire,
				i,
				last_kind = 0;
	size_t		entries = 0;
	Reader		chosen[PGML_MAX_FEATURES];
	int			kinds[PGML_MAX_FEATURES];

	if (n < 1 || n > PGML_MAX_FEATURES || (only && n != 1))
		return 0;
	for (i = 0; i < n; i++)
		features[i].found = 0;

	/* Example: features (1), once */
	while (r.p < r.end)
	{
		if (!read_tag(&r, &field, &wire) || field != 1 || wire != WIRE_LEN
			|| map.p != NULL || !read_len(&r, &map))
			return 0;
	}
	/* Features: map entries (1); every one checked, the wanted ones kept */
	while (map.p != NULL && map.p < map.end)
	{
		Reader		entry,
					key,
					values;
		int			kind;

		if (!read_tag(&map, &field, &wire) || field != 1 || wire != WIRE_LEN
			|| !read_len(&map, &entry) || !check_entry(entry, &key, &kind, &values))
			return 0;
		entries++;
		last = values;
		last_kind = kind;
		for (i = 0; i < n; i++)
		{
			size_t		name_len = strlen(features[i].name);

			if ((size_t) (key.end - key.p) == name_len
				&& memcmp(key.p, features[i].name, name_len) == 0)
			{
				/* duplicate keys (the last wins in a map): left to upb */
				if (features[i].found)
					return 0;
				features[i].found = 1;
				chosen[i] = values;
				kinds[i] = kind;
			}
		}
	}
	if (only && !features[0].found)
	{
		if (entries != 1)
			return 0;
		features[0].found = 1;
		chosen[0] = last;
		kinds[0] = last_kind;
	}
	for (i = 0; i < n; i++)
		if (features[i].found
			&& (kinds[i] != features[i].kind || !copy_values(&features[i], chosen[i])))
			return 0;
	return 1;
}
