// A client that knows only the server's address: it discovers FeedRanker
// through server reflection, builds the request type from the descriptors
// the server sends, and calls RankFeed with dynamic messages.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <gtest/gtest.h>

#include <future>

#include "feedrank/v1/client_wire.pb.h"
#include "server/feed_server.h"
#include "tests/test_bundles.h"

namespace feedrank {
namespace {

namespace pb = google::protobuf;

constexpr char kReflectionV1Alpha[] =
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
constexpr char kReflectionV1[] =
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

using ReflectionStub =
    grpc::TemplatedGenericStub<wire::ReflectionRequest, wire::ReflectionResponse>;

// One request and one response on a reflection stream.
class ReflectionCall
    : public grpc::ClientBidiReactor<wire::ReflectionRequest, wire::ReflectionResponse> {
 public:
  ReflectionCall(ReflectionStub* stub, wire::ReflectionRequest request,
                 const char* method)
      : request_(std::move(request)) {
    stub->PrepareBidiStreamingCall(&context_, method, grpc::StubOptions(), this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void OnWriteDone(bool ok) override { StartWritesDone(); }
  void OnReadDone(bool ok) override { read_ok_ = ok; }
  void OnDone(const grpc::Status& status) override { done_.set_value(status); }

  // Waits for the stream to end; returns its status.
  grpc::Status Status() { return done_.get_future().get(); }

  // Waits for the stream to end; returns the response.
  wire::ReflectionResponse Wait() {
    grpc::Status status = done_.get_future().get();
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(read_ok_);
    return response_;
  }

 private:
  grpc::ClientContext context_;
  wire::ReflectionRequest request_;
  wire::ReflectionResponse response_;
  bool read_ok_ = false;
  std::promise<grpc::Status> done_;
};

wire::ReflectionResponse Ask(ReflectionStub* stub, wire::ReflectionRequest request,
                             const char* method = kReflectionV1Alpha) {
  ReflectionCall call(stub, std::move(request), method);
  return call.Wait();
}

// Discovers FeedRanker through reflection `method` (v1 or v1alpha) and calls
// RankFeed with messages built from the descriptors alone.
void DiscoverAndCallRankFeed(const char* reflection_method) {
  testing::TempDir dir;
  testing::WriteSmallBundle(testing::SmallSynth(2000, 100), dir.Sub("bundle"));
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.bundle_dir = dir.Sub("bundle");
  auto server = FeedServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Load().ok());
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());

  // From here on, only `address` is used.
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  ReflectionStub reflection(channel);

  wire::ReflectionRequest list;
  list.set_list_services("");
  wire::ReflectionResponse services = Ask(&reflection, list, reflection_method);
  std::string ranker_service;
  for (const auto& service : services.list_services_response().service()) {
    if (service.name().find("FeedRanker") != std::string::npos)
      ranker_service = service.name();
  }
  ASSERT_EQ(ranker_service, "feedrank.v1.FeedRanker");

  // Descriptors of the service's file and everything it imports.
  pb::SimpleDescriptorDatabase database;
  std::set<std::string> added;
  std::vector<std::string> wanted;
  auto add_files = [&](const wire::ReflectionResponse& response) {
    for (const std::string& bytes :
         response.file_descriptor_response().file_descriptor_proto()) {
      pb::FileDescriptorProto file;
      ASSERT_TRUE(file.ParseFromString(bytes));
      if (!added.insert(file.name()).second) continue;
      for (const std::string& dependency : file.dependency())
        wanted.push_back(dependency);
      ASSERT_TRUE(database.Add(file));
    }
  };
  wire::ReflectionRequest by_symbol;
  by_symbol.set_file_containing_symbol(ranker_service);
  add_files(Ask(&reflection, by_symbol, reflection_method));
  while (!wanted.empty()) {
    const std::string name = wanted.back();
    wanted.pop_back();
    if (added.count(name)) continue;
    wire::ReflectionRequest by_name;
    by_name.set_file_by_filename(name);
    add_files(Ask(&reflection, by_name, reflection_method));
  }
  pb::DescriptorPool pool(&database);
  const pb::ServiceDescriptor* service = pool.FindServiceByName(ranker_service);
  ASSERT_NE(service, nullptr);
  const pb::MethodDescriptor* method = service->FindMethodByName("RankFeed");
  ASSERT_NE(method, nullptr);

  // Build the request from field names alone.
  pb::DynamicMessageFactory factory(&pool);
  std::unique_ptr<pb::Message> request(factory.GetPrototype(method->input_type())->New());
  const pb::Reflection* r = request->GetReflection();
  r->SetUInt64(request.get(), method->input_type()->FindFieldByName("user_id"), 42);
  r->SetUInt32(request.get(), method->input_type()->FindFieldByName("count"), 7);
  r->SetString(request.get(), method->input_type()->FindFieldByName("request_id"),
               "reflected");

  grpc::GenericStub generic(channel);
  grpc::Slice slice(request->SerializeAsString());
  grpc::ByteBuffer request_bytes(&slice, 1);
  grpc::ByteBuffer response_bytes;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, absl::StrCat("/", ranker_service, "/", method->name()),
                    grpc::StubOptions(), &request_bytes, &response_bytes,
                    [&done](grpc::Status status) { done.set_value(status); });
  grpc::Status status = done.get_future().get();
  ASSERT_TRUE(status.ok()) << status.error_message();

  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response_bytes.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  std::unique_ptr<pb::Message> response(
      factory.GetPrototype(method->output_type())->New());
  ASSERT_TRUE(response->ParseFromString(bytes));
  const pb::Descriptor* out = method->output_type();
  const pb::Reflection* rr = response->GetReflection();
  ASSERT_EQ(rr->FieldSize(*response, out->FindFieldByName("items")), 7);
  EXPECT_EQ(rr->GetString(*response, out->FindFieldByName("request_id")), "reflected");
  EXPECT_TRUE(rr->GetBool(*response, out->FindFieldByName("cold_start")));
  const pb::Message& first =
      rr->GetRepeatedMessage(*response, out->FindFieldByName("items"), 0);
  EXPECT_NE(first.GetReflection()->GetUInt64(
                first, first.GetDescriptor()->FindFieldByName("video_id")),
            0u);
}

TEST(ReflectionTest, ClientWithOnlyTheAddressDiscoversAndCallsRankFeedV1Alpha) {
  DiscoverAndCallRankFeed(kReflectionV1Alpha);
}

TEST(ReflectionTest, ClientWithOnlyTheAddressDiscoversAndCallsRankFeedV1) {
  DiscoverAndCallRankFeed(kReflectionV1);
}

TEST(ReflectionTest, ReflectionCanBeTurnedOff) {
  ServerOptions options;
  options.address = "127.0.0.1:0";
  options.bundle_dir = "/not/loaded";
  options.reflection = false;
  auto server = FeedServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  ReflectionStub reflection(channel);
  for (const char* method : {kReflectionV1, kReflectionV1Alpha}) {
    wire::ReflectionRequest list;
    list.set_list_services("");
    ReflectionCall call(&reflection, list, method);
    // The stream fails: no such method on this server.
    EXPECT_EQ(call.Status().error_code(), grpc::StatusCode::UNIMPLEMENTED) << method;
  }
}

}  // namespace
}  // namespace feedrank
