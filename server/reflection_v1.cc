#include "server/reflection_v1.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <set>

namespace feedrank {
namespace {

namespace pb = google::protobuf;
namespace rv1 = grpc::reflection::v1;

// `file` and everything it imports, each once, dependencies first.
void AddFileAndDependencies(const pb::FileDescriptor* file, std::set<std::string>* seen,
                            rv1::FileDescriptorResponse* out) {
  if (!seen->insert(file->name()).second) return;
  for (int i = 0; i < file->dependency_count(); ++i) {
    AddFileAndDependencies(file->dependency(i), seen, out);
  }
  pb::FileDescriptorProto proto;
  file->CopyTo(&proto);
  proto.SerializeToString(out->add_file_descriptor_proto());
}

void NotFound(rv1::ServerReflectionResponse* response, const std::string& what) {
  rv1::ErrorResponse* error = response->mutable_error_response();
  error->set_error_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
  error->set_error_message(what + " not found");
}

}  // namespace

grpc::Status ReflectionV1::ServerReflectionInfo(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<rv1::ServerReflectionResponse, rv1::ServerReflectionRequest>*
        stream) {
  const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
  rv1::ServerReflectionRequest request;
  while (stream->Read(&request)) {
    rv1::ServerReflectionResponse response;
    response.set_valid_host(request.host());
    *response.mutable_original_request() = request;
    std::set<std::string> seen;
    switch (request.message_request_case()) {
      case rv1::ServerReflectionRequest::kFileByFilename:
        if (const pb::FileDescriptor* file =
                pool->FindFileByName(request.file_by_filename())) {
          AddFileAndDependencies(file, &seen,
                                 response.mutable_file_descriptor_response());
        } else {
          NotFound(&response, "file " + request.file_by_filename());
        }
        break;
      case rv1::ServerReflectionRequest::kFileContainingSymbol:
        if (const pb::FileDescriptor* file =
                pool->FindFileContainingSymbol(request.file_containing_symbol())) {
          AddFileAndDependencies(file, &seen,
                                 response.mutable_file_descriptor_response());
        } else {
          NotFound(&response, "symbol " + request.file_containing_symbol());
        }
        break;
      case rv1::ServerReflectionRequest::kFileContainingExtension: {
        const rv1::ExtensionRequest& ext = request.file_containing_extension();
        const pb::Descriptor* type = pool->FindMessageTypeByName(ext.containing_type());
        const pb::FieldDescriptor* field =
            type == nullptr ? nullptr
                            : pool->FindExtensionByNumber(type, ext.extension_number());
        if (field != nullptr) {
          AddFileAndDependencies(field->file(), &seen,
                                 response.mutable_file_descriptor_response());
        } else {
          NotFound(&response, "extension " + std::to_string(ext.extension_number()) +
                                  " of " + ext.containing_type());
        }
        break;
      }
      case rv1::ServerReflectionRequest::kAllExtensionNumbersOfType: {
        const pb::Descriptor* type =
            pool->FindMessageTypeByName(request.all_extension_numbers_of_type());
        if (type == nullptr) {
          NotFound(&response, "type " + request.all_extension_numbers_of_type());
          break;
        }
        std::vector<const pb::FieldDescriptor*> extensions;
        pool->FindAllExtensions(type, &extensions);
        rv1::ExtensionNumberResponse* numbers =
            response.mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const pb::FieldDescriptor* e : extensions)
          numbers->add_extension_number(e->number());
        break;
      }
      case rv1::ServerReflectionRequest::kListServices:
        for (const std::string& name : services_) {
          response.mutable_list_services_response()->add_service()->set_name(name);
        }
        break;
      default: {
        rv1::ErrorResponse* error = response.mutable_error_response();
        error->set_error_code(static_cast<int>(grpc::StatusCode::UNIMPLEMENTED));
        error->set_error_message("request kind not known to this server");
      }
    }
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

}  // namespace feedrank
