//! A loopback DNS server for tests. See the crate docs for an example.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Header, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};

pub use hickory_proto::rr::Record as DnsRecord;
pub use hickory_server::store::in_memory::InMemoryZoneHandler as Zone;

/// A fully qualified name; panics on a malformed one (a bug in the test).
pub fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// An A record.
pub fn a(owner: &str, ip: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::from_str(ip).unwrap()))
}

/// An AAAA record.
pub fn aaaa(owner: &str, ip: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::AAAA(AAAA::from_str(ip).unwrap()))
}

/// An MX record (`exchange` "." is a null MX, RFC 7505).
pub fn mx(owner: &str, preference: u16, exchange: &str, ttl: u32) -> Record {
    Record::from_rdata(
        name(owner),
        ttl,
        RData::MX(MX::new(preference, name(exchange))),
    )
}

/// A TXT record, split into ≤ 255-octet character-strings (RFC 1035 §3.3.14).
pub fn txt(owner: &str, text: &str, ttl: u32) -> Record {
    let parts: Vec<String> = text
        .as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    Record::from_rdata(name(owner), ttl, RData::TXT(TXT::new(parts)))
}

/// Logs each query, answers SERVFAIL or nothing under the configured
/// names, else asks the catalog.
struct Handler {
    catalog: Catalog,
    servfail: Vec<LowerName>,
    silent: Vec<LowerName>,
    log: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        if let Ok(info) = request.request_info() {
            let qname = info.query.name();
            self.log.lock().unwrap().push(format!(
                "{} {}",
                qname.to_string().to_ascii_lowercase(),
                info.query.query_type()
            ));
            if self.silent.iter().any(|s| s.zone_of(qname)) {
                // No answer at all: the resolver times out (a temporary error).
                return ResponseInfo::from(Header {
                    metadata: Metadata::response_from_request(&request.metadata),
                    counts: Default::default(),
                });
            }
            if self.servfail.iter().any(|s| s.zone_of(qname)) {
                let response = MessageResponseBuilder::new(&request.queries, None)
                    .error_msg(&request.metadata, ResponseCode::ServFail);
                return response_handle.send_response(response).await.unwrap();
            }
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// What the server will serve; see [`DnsServer::builder`].
#[derive(Default)]
pub struct DnsServerBuilder {
    zones: Vec<(String, Vec<Record>)>,
    servfail: Vec<String>,
    silent: Vec<String>,
}

impl DnsServerBuilder {
    /// Serve `origin` (fully qualified, e.g. `"mx.test."`) with `records`
    /// and an SOA whose negative TTL is 60 s (RFC 2308 §5).
    pub fn zone(mut self, origin: &str, records: Vec<Record>) -> Self {
        self.zones.push((origin.to_owned(), records));
        self
    }

    /// Answer SERVFAIL for every name at or below `suffix`.
    pub fn servfail_under(mut self, suffix: &str) -> Self {
        self.servfail.push(suffix.to_owned());
        self
    }

    /// Never answer names at or below `suffix` (the resolver times out).
    pub fn silent_under(mut self, suffix: &str) -> Self {
        self.silent.push(suffix.to_owned());
        self
    }

    /// Bind 127.0.0.1 on an ephemeral UDP port (and TCP on the same port
    /// when free) and start serving.
    pub async fn start(self) -> DnsServer {
        let mut catalog = Catalog::new();
        let mut zones = HashMap::new();
        for (origin, records) in self.zones {
            let z = Arc::new(zone(&origin, records));
            catalog.upsert(z.origin().clone(), vec![z.clone() as Arc<dyn ZoneHandler>]);
            zones.insert(origin.to_ascii_lowercase(), z);
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let lower = |v: Vec<String>| v.iter().map(|s| LowerName::from(name(s))).collect();
        let mut server = Server::new(Handler {
            catalog,
            servfail: lower(self.servfail),
            silent: lower(self.silent),
            log: log.clone(),
        });
        server.register_socket(udp);
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            server.register_listener(tcp, Duration::from_secs(5), 65_535);
        }
        DnsServer {
            addr,
            zones,
            log,
            _server: server,
        }
    }
}

fn zone(origin: &str, records: Vec<Record>) -> InMemoryZoneHandler {
    let mut z = InMemoryZoneHandler::empty(name(origin), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(
        name(&format!("ns.{origin}")),
        name(&format!("hostmaster.{origin}")),
        1,
        3600,
        600,
        86_400,
        60,
    );
    z.upsert_mut(Record::from_rdata(name(origin), 3600, RData::SOA(soa)), 1);
    for r in records {
        assert!(z.upsert_mut(r, 1), "duplicate test record");
    }
    z
}

/// A running loopback DNS server; stops when dropped.
pub struct DnsServer {
    /// Where it listens (UDP, and TCP on the same port).
    pub addr: SocketAddr,
    zones: HashMap<String, Arc<InMemoryZoneHandler>>,
    log: Arc<Mutex<Vec<String>>>,
    _server: Server<Handler>,
}

impl DnsServer {
    /// Start describing one.
    pub fn builder() -> DnsServerBuilder {
        DnsServerBuilder::default()
    }

    /// How many queries of `qtype` (e.g. `"A"`, `"TXT"`) for `qname`
    /// (fully qualified, any case) it has received: tells a cached answer
    /// from a fresh one.
    pub fn queries(&self, qname: &str, qtype: &str) -> usize {
        let entry = format!("{} {qtype}", qname.to_ascii_lowercase());
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|q| **q == entry)
            .count()
    }

    /// The zone served for `origin`, to change records while it runs
    /// (`upsert` with a higher serial).
    pub fn zone(&self, origin: &str) -> Arc<InMemoryZoneHandler> {
        self.zones[&origin.to_ascii_lowercase()].clone()
    }
}
