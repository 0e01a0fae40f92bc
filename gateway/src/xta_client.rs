//! A minimal XTA 2 client for our own tools (`poststelle demo`, `poststelle bench --via xta`):
//! createMessageId, and sendMessage with the content as an MTOM/XOP part, as a Fachverfahren's
//! XTA stack sends it. The tests use an independent client instead (zeep, `tests/xta/`).

use anyhow::Context as _;

use crate::intake::soap::{SOAP_NS, WSA_NS, XOP_NS, esc};
use crate::intake::xta::{META_NS, XTA_NS};

/// What `MessageMetaData/Qualifier` says about a message.
#[derive(Debug, Clone)]
pub struct MessageKind {
    pub code: String,
    pub list_uri: String,
    pub list_version: String,
    /// The namespace of the message's root element.
    pub payload_schema: String,
    pub service: String,
}

impl MessageKind {
    /// The demo standard's messages (XUmzug 1.0) with this type code.
    pub fn xumzug(code: &str) -> MessageKind {
        MessageKind {
            code: code.into(),
            list_uri: "urn:poststelle:demo:codeliste:xumzug-nachrichten".into(),
            list_version: "1.0".into(),
            payload_schema: "urn:poststelle:demo:xumzug:1.0".into(),
            service: "urn:poststelle:demo:xumzug".into(),
        }
    }
}

/// One client of one node's XTA ports.
#[derive(Debug, Clone)]
pub struct XtaClient {
    pub http: reqwest::Client,
    /// The node's client API, `https://host:port`.
    pub api: String,
    pub token: String,
    /// The client's authority.
    pub author: String,
}

fn identifier(who: &str) -> String {
    format!("<m:Identifier type=\"xoev\">{}</m:Identifier>", esc(who))
}

fn envelope(action: &str, to: &str, header: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><s:Envelope xmlns:s=\"{SOAP_NS}\" xmlns:wsa=\"{WSA_NS}\" \
         xmlns:m=\"{META_NS}\" xmlns:xta=\"{XTA_NS}\"><s:Header><wsa:Action>{action}</wsa:Action>\
         <wsa:MessageID>urn:uuid:{}</wsa:MessageID><wsa:To>{to}</wsa:To>{header}</s:Header>\
         <s:Body>{body}</s:Body></s:Envelope>",
        uuid::Uuid::new_v4()
    )
}

/// The outcome of a call: success, or the HTTP status and the fault's text.
pub type Outcome = Result<String, (u16, String)>;

impl XtaClient {
    /// One plain SOAP 1.2 call to the Management port as this client's authority: (HTTP
    /// status, answer).
    async fn management(&self, action: &str, body: &str) -> anyhow::Result<(u16, String)> {
        let to = format!("{}/xta/management", self.api);
        let header = format!("<m:Author>{}</m:Author>", identifier(&self.author));
        let r = self
            .http
            .post(&to)
            .bearer_auth(&self.token)
            .header("content-type", "application/soap+xml; charset=utf-8")
            .body(envelope(action, &to, &header, body))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// createMessageId: a fresh message id from the node.
    pub async fn create_id(&self) -> anyhow::Result<Outcome> {
        let (status, text) = self.management("http://www.xta.de/XTA/CreateMessageID", "").await?;
        if status != 200 {
            return Ok(Err((status, text)));
        }
        let doc = roxmltree::Document::parse(&text).context("createMessageId answer")?;
        let id = doc
            .descendants()
            .filter(|n| n.has_tag_name((WSA_NS, "MessageID")))
            .find(|n| n.ancestors().any(|a| a.has_tag_name((SOAP_NS, "Body"))))
            .and_then(|n| n.text())
            .context("createMessageId answered no wsa:MessageID")?;
        Ok(Ok(id.trim().to_owned()))
    }

    /// sendMessage of `message` (an XÖV document) to `reader` under `id`, the content as an
    /// MTOM part.
    pub async fn send(&self, message: Vec<u8>, reader: &str, kind: &MessageKind, id: &str) -> anyhow::Result<Outcome> {
        let to = format!("{}/xta/send", self.api);
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let header = format!(
            "<m:MessageMetaData><m:DeliveryAttributes><m:Origin>{now}</m:Origin></m:DeliveryAttributes>\
             <m:Originators><m:Author>{}</m:Author></m:Originators>\
             <m:Destinations><m:Reader>{}</m:Reader></m:Destinations>\
             <m:MsgIdentification><wsa:MessageID>{}</wsa:MessageID></m:MsgIdentification>\
             <m:Qualifier><m:Service>{}</m:Service><m:BusinessScenario><m:Undefined>poststelle</m:Undefined></m:BusinessScenario>\
             <m:MessageType listURI=\"{}\" listVersionID=\"{}\" payloadSchema=\"{}\"><code>{}</code></m:MessageType></m:Qualifier>\
             </m:MessageMetaData>",
            identifier(&self.author),
            identifier(reader),
            esc(id),
            esc(&kind.service),
            esc(&kind.list_uri),
            esc(&kind.list_version),
            esc(&kind.payload_schema),
            esc(&kind.code)
        );
        let cid = format!("content.{}@poststelle", uuid::Uuid::new_v4().simple());
        let body = format!(
            "<xta:GenericContentContainer><xta:ContentContainer><xta:Message contentType=\"application/xml\">\
             <xop:Include xmlns:xop=\"{XOP_NS}\" href=\"cid:{cid}\"/></xta:Message></xta:ContentContainer></xta:GenericContentContainer>"
        );
        let xml = envelope("http://www.xta.de/XTA/SendMessage", &to, &header, &body);
        let boundary = format!("MIME_{}", uuid::Uuid::new_v4().simple());
        let mut mime = format!(
            "--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n\
             Content-Transfer-Encoding: binary\r\nContent-ID: <root@poststelle>\r\n\r\n{xml}\r\n\
             --{boundary}\r\nContent-Type: application/xml\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n"
        )
        .into_bytes();
        mime.extend_from_slice(&message);
        mime.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let r = self
            .http
            .post(&to)
            .bearer_auth(&self.token)
            .header(
                "content-type",
                format!(
                    "multipart/related; type=\"application/xop+xml\"; boundary=\"{boundary}\"; start=\"<root@poststelle>\"; start-info=\"application/soap+xml\""
                ),
            )
            .body(mime)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok(if status == 200 { Ok(text) } else { Err((status, text)) })
    }
}
