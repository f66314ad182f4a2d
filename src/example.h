/* example.h: a tf.Example's float feature, read in place (example.c). */
#ifndef PGML_EXAMPLE_H
#define PGML_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

/*
 * 1 and *FLOATS (COUNT little-endian floats, unaligned) if DATA is a tf.Example of the
 * plain form whose feature FEATURE (else its only feature) is a float_list of COUNT
 * values; 0 for anything else, which the caller leaves to upb.
 */
extern int	pgml_example_floats(const uint8_t *data, size_t len, const char *feature,
								size_t count, const uint8_t **floats);

#endif
