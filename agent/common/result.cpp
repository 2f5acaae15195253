#include "agent/common/result.h"

#include <cstring>

namespace threadline {

Error Error::FromErrno(std::string what, int err) {
  if (err < 0) err = -err;
  return Error{std::move(what) + ": " + std::strerror(err), err};
}

}  // namespace threadline
