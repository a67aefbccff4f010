// QuoteForError: how an outside value (a log field, a request string) appears
// in an error message.
// A log's field or line can be hundreds of megabytes; an error that quotes it
// must stay one short line, so every quoted log value goes through here.
#ifndef FEEDRANK_BASE_QUOTE_H_
#define FEEDRANK_BASE_QUOTE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace feedrank {

// Default budget: enough to recognise a value, short enough for one line.
inline constexpr size_t kMaxQuotedBytes = 64;

// `text` in single quotes when it has at most `max_bytes` bytes; else its
// first `max_bytes` bytes (fewer if that would split a UTF-8 character) in
// quotes, followed by "... (N bytes)" with N the size of the whole of `text`.
// The bytes are copied as they are (no escaping).
std::string QuoteForError(absl::string_view text, size_t max_bytes = kMaxQuotedBytes);

}  // namespace feedrank

#endif  // FEEDRANK_BASE_QUOTE_H_
