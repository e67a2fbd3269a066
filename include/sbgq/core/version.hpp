// sbgq version and namespace macros.
//
// Every public name lives in `sbgq::v0` (an inline namespace), so two incompatible
// releases linked into one program cannot silently mix their inline functions (the
// same trick as fmt's and nlohmann's versioned namespaces).
#pragma once

#define SBGQ_VERSION_MAJOR 0
#define SBGQ_VERSION_MINOR 1
#define SBGQ_VERSION_PATCH 0
#define SBGQ_VERSION_STRING "0.1.0"

#define SBGQ_BEGIN_NAMESPACE \
  namespace sbgq {           \
  inline namespace v0 {
#define SBGQ_END_NAMESPACE \
  }                        \
  }
