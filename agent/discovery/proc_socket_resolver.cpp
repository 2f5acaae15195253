#include "agent/discovery/proc_socket_resolver.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/common/clock.h"
#include "agent/common/unique_fd.h"
#include "agent/discovery/proc_fs.h"
#include "agent/discovery/process_info.h"

namespace threadline {

namespace {
constexpr uint8_t kTcpListen = 10;

std::optional<uint32_t> ParseHex32(std::string_view s) {
  if (s.empty() || s.size() > 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return std::nullopt;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  return v;
}

// "0100007F:1F90": the address as the kernel's %08X of each 32-bit word in host byte order
// (so memcpy of the parsed word gives network-order bytes), then the port as a number.
bool ParseEndpoint(std::string_view text, uint16_t family, IpAddress* addr, uint16_t* port) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view hex = text.substr(0, colon);
  size_t words = family == AF_INET ? 1 : 4;
  if (hex.size() != words * 8) return false;
  uint8_t bytes[16] = {};
  for (size_t i = 0; i < words; ++i) {
    auto w = ParseHex32(hex.substr(i * 8, 8));
    if (!w) return false;
    std::memcpy(bytes + i * 4, &*w, 4);
  }
  auto p = ParseHex32(text.substr(colon + 1));
  if (!p || *p > 0xffff) return false;
  *addr = IpAddress::FromKernel(family, bytes);
  *port = static_cast<uint16_t>(*p);
  return true;
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

uint64_t OwnNetns() {
  struct stat st {};
  return ::stat("/proc/self/ns/net", &st) == 0 ? st.st_ino : 0;
}
}  // namespace

namespace discovery {

std::vector<TcpSocketEntry> ParseProcNetTcp(std::string_view text, uint16_t family) {
  std::vector<TcpSocketEntry> out;
  bool header = true;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (header) {  // "  sl  local_address rem_address   st ..."
      header = false;
      continue;
    }
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    auto f = Fields(line);
    if (f.size() < 10) continue;
    TcpSocketEntry e;
    e.tuple.family = family;
    auto st = ParseHex32(f[3]);
    auto inode = ParseDecimal(f[9]);
    if (!st || !inode ||
        !ParseEndpoint(f[1], family, &e.tuple.local, &e.tuple.local_port) ||
        !ParseEndpoint(f[2], family, &e.tuple.remote, &e.tuple.remote_port))
      continue;
    e.state = static_cast<uint8_t>(*st);
    e.inode = *inode;
    out.push_back(e);
  }
  return out;
}

Result<std::vector<TcpSocketEntry>> DumpInetDiag(uint16_t family) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd.valid()) return Error::FromErrno("socket(NETLINK_SOCK_DIAG)", errno);

  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = 1;
  msg.req.sdiag_family = static_cast<uint8_t>(family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = ~0u;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof(kernel)) < 0)
    return Error::FromErrno("inet_diag request", errno);

  std::vector<TcpSocketEntry> out;
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno("inet_diag receive", errno);
    }
    if (n == 0) return out;
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return Error::FromErrno("inet_diag dump", -err->error);
      }
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) continue;
      auto* d = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      TcpSocketEntry e;
      e.inode = d->idiag_inode;
      e.state = d->idiag_state;
      e.tuple.family = d->idiag_family;
      e.tuple.local = IpAddress::FromKernel(d->idiag_family,
                                            reinterpret_cast<const uint8_t*>(d->id.idiag_src));
      e.tuple.remote = IpAddress::FromKernel(d->idiag_family,
                                             reinterpret_cast<const uint8_t*>(d->id.idiag_dst));
      e.tuple.local_port = ntohs(d->id.idiag_sport);
      e.tuple.remote_port = ntohs(d->id.idiag_dport);
      out.push_back(e);
    }
  }
}

}  // namespace discovery

ProcSocketResolver::ProcSocketResolver(MetricsRegistry& metrics, std::string proc_root,
                                       uint64_t cache_ttl_ns, Source source)
    : proc_root_(std::move(proc_root)),
      cache_ttl_ns_(cache_ttl_ns),
      own_netns_(proc_root_ == "/proc" && source == Source::kAuto ? OwnNetns() : 0),
      resolved_(metrics.GetCounter("threadline_socket_lookups_total", {{"result", "resolved"}},
                                   "Late-seen sockets looked up in /proc or inet_diag")),
      unresolved_(metrics.GetCounter("threadline_socket_lookups_total", {{"result", "unresolved"}})),
      listings_(metrics.GetCounter("threadline_socket_listings_total", {},
                                   "TCP socket listings of a network namespace fetched")),
      listing_errors_(metrics.GetCounter("threadline_socket_listing_errors_total", {},
                                         "TCP socket listings that failed")) {}

Result<ProcSocketResolver::Listing> ProcSocketResolver::Fetch(uint32_t tgid, uint64_t netns) {
  Listing listing;
  auto add = [&listing](const std::vector<TcpSocketEntry>& entries) {
    for (const auto& e : entries) {
      if (e.state == kTcpListen) listing.listening_ports.insert(e.tuple.local_port);
      else if (e.inode != 0) listing.by_inode.emplace(e.inode, e.tuple);
    }
  };
  if (netns != 0 && netns == own_netns_) {
    for (uint16_t family : {AF_INET, AF_INET6}) {
      ASSIGN_OR_RETURN(auto entries, discovery::DumpInetDiag(family));
      add(entries);
    }
  } else {
    const std::string base = proc_root_ + "/" + std::to_string(tgid) + "/net/";
    bool any = false;
    for (auto [file, family] : {std::pair{"tcp", AF_INET}, std::pair{"tcp6", AF_INET6}}) {
      auto text = discovery::ReadProcFile(base + file, 64 << 20);
      if (!text.ok()) continue;  // tcp6 is missing when IPv6 is disabled
      any = true;
      add(discovery::ParseProcNetTcp(*text, static_cast<uint16_t>(family)));
    }
    if (!any) return Error{"cannot read " + base + "tcp"};
  }
  listing.fetched_ns = BootClock::NowBootNs();
  listings_.Add(1);
  return listing;
}

const ProcSocketResolver::Listing* ProcSocketResolver::ListingFor(uint32_t tgid, bool refresh) {
  auto netns = ReadNetnsInode(tgid, proc_root_);
  uint64_t key = netns.ok() ? *netns : 0;  // 0: unknown, listed through the pid's own files
  auto it = by_netns_.find(key);
  uint64_t now = BootClock::NowBootNs();
  if (it != by_netns_.end() && !refresh && now - it->second.fetched_ns < cache_ttl_ns_)
    return &it->second;
  auto fetched = Fetch(tgid, key);
  if (!fetched.ok()) {
    listing_errors_.Add(1);
    spdlog::debug("socket listing for pid {} failed: {}", tgid, fetched.error().message);
    return nullptr;
  }
  if (key == 0) {  // never cache a listing we cannot name
    scratch_ = std::move(*fetched);
    return &scratch_;
  }
  if (by_netns_.size() > 256) by_netns_.clear();  // namespaces come and go; bound the cache
  auto& slot = by_netns_[key];
  slot = std::move(*fetched);
  return &slot;
}

std::optional<Tuple> ProcSocketResolver::TupleOf(uint32_t tgid, int32_t fd) {
  auto link = discovery::ReadLink(proc_root_ + "/" + std::to_string(tgid) + "/fd/" +
                                  std::to_string(fd));
  std::optional<uint64_t> inode =
      link.ok() ? discovery::ParseBracketedInode(*link, "socket") : std::nullopt;
  if (!inode) {
    unresolved_.Add(1);
    return std::nullopt;
  }
  for (bool refresh : {false, true}) {
    const Listing* listing = ListingFor(tgid, refresh);
    if (listing == nullptr) break;
    auto it = listing->by_inode.find(*inode);
    if (it != listing->by_inode.end()) {
      resolved_.Add(1);
      return it->second;
    }
  }
  unresolved_.Add(1);
  return std::nullopt;
}

std::optional<Role> ProcSocketResolver::RoleOf(uint32_t tgid, const Tuple& tuple) {
  const Listing* listing = ListingFor(tgid, false);
  if (listing == nullptr) return std::nullopt;
  return listing->listening_ports.count(tuple.local_port) ? Role::kServer : Role::kClient;
}

}  // namespace threadline
