// ReflectionV1: grpc.reflection.v1.ServerReflection, next to the v1alpha
// service gRPC 1.51's plugin provides (reflection clients ask for v1 first).
// Answers from the process's generated descriptor pool: a file by name, the
// file of a symbol or an extension (each with its dependencies), a type's
// extension numbers, and the server's services.
//
// Thread-safety: thread-safe (the pool is immutable; each stream is served
// by one thread).
#ifndef FEEDRANK_SERVER_REFLECTION_V1_H_
#define FEEDRANK_SERVER_REFLECTION_V1_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace feedrank {

class ReflectionV1 final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // `services`: what list_services reports.
  explicit ReflectionV1(std::vector<std::string> services)
      : services_(std::move(services)) {}

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream)
      override;

 private:
  std::vector<std::string> services_;
};

}  // namespace feedrank

#endif  // FEEDRANK_SERVER_REFLECTION_V1_H_
