// Configuration of the example filter: `{"blocked_path": "/blocked"}`.
#ifndef EXAMPLE_JSON_CONFIG_H
#define EXAMPLE_JSON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEFAULT_BLOCKED_PATH "/blocked"

// Parses and validates the configuration bytes. Empty (all-whitespace) input
// keeps the default. On success stores a malloc'd blocked path in `*path`
// (NULL for the default) and returns true; on failure writes
// "invalid config: ..." into `message` and returns false.
bool parse_example_config(const uint8_t *data, size_t len, char **path, char *message,
                          size_t message_size);

#endif
