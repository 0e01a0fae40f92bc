//! XTA's Management port: createMessageId, checkAccountActive, lookupService,
//! getTransportReport, cancelMessage.

use super::*;

pub(super) async fn management(ctx: &Ctx, call: &Call, p: &Parsed<'_, '_>) -> Answered {
    author_header(p, &call.client)?;
    let body = match p.op {
        CHECK_ACCOUNT => String::new(),
        CREATE_MESSAGE_ID => {
            let id = xta_id(&uuid::Uuid::now_v7().to_string());
            format!("<wsa:MessageID>{id}</wsa:MessageID>")
        }
        LOOKUP_SERVICE => lookup(ctx, p.body)?,
        TRANSPORT_REPORT => report(ctx, &call.client, p.body).await?,
        CANCEL_MESSAGE => {
            let id = body_message_id(p.body)?;
            crate::actions::own_message(ctx, &call.client, &id).await?;
            let who = format!("cancelled by client {} (XTA)", call.client.name);
            let result = crate::actions::cancel_message(ctx, &id, &who).await;
            ctx.audit
                .note(
                    &format!("client:{}", call.client.name),
                    "cancel",
                    serde_json::json!({
                        "message_id": id,
                        "outcome": result.as_ref().map_or_else(|p| p.code.as_str(), |_| "ok"),
                    }),
                )
                .await;
            result?;
            String::new()
        }
        _ => unreachable!("the Management port's operations are listed in Port::operations"),
    };
    Ok((String::new(), body, Vec::new()))
}

/// lookupService: for each reader and service, whether this node can deliver to it — the
/// reader is served by a partner in the directory — and, if so, the reader's encryption
/// certificate as a service parameter.
pub(super) fn lookup(ctx: &Ctx, body: Node<'_, '_>) -> Result<String, Problem> {
    let request =
        child(body, XTA_NS, "LookupServiceRequest").ok_or_else(|| invalid("the body holds no LookupServiceRequest"))?;
    let items: Vec<Node<'_, '_>> = request
        .children()
        .filter(|c| c.has_tag_name((XTA_NS, "LookupServiceRequestList")))
        .take(MAX_LOOKUPS + 1)
        .collect();
    if items.len() > MAX_LOOKUPS {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!("at most {MAX_LOOKUPS} lookups per request"),
        ));
    }
    let mut results = String::new();
    for item in items {
        let service = child(item, XTA_NS, "LookupService")
            .ok_or_else(|| invalid("LookupServiceRequestList without LookupService"))?;
        let reader_node = child(service, META_NS, "Reader").ok_or_else(|| invalid("LookupService without Reader"))?;
        let reader = identifier(reader_node)?;
        let service_type = child(service, XTA_NS, "ServiceType")
            .map(text)
            .ok_or_else(|| invalid("LookupService without ServiceType"))?;
        let available = ctx.config().partner_for(&reader).is_some();
        let certificate = ctx
            .keys()
            .partner_authorities
            .get(&reader)
            .and_then(|c| c.first()?.to_der().ok())
            .filter(|_| available);
        let parameter = certificate
            .map(|der| {
                format!(
                    "<xta:ServiceParameter><xta:ParameterType listURI=\"urn:poststelle:xta:service-parameter\" listVersionID=\"1\"><code>encryption-certificate</code></xta:ParameterType>\
                     <xta:Resource>{}</xta:Resource></xta:ServiceParameter>",
                    B64.encode(der)
                )
            })
            .unwrap_or_default();
        results.push_str(&format!(
            "<xta:LookupServiceResult><oscimeta:Reader><oscimeta:Identifier type=\"xoev\">{}</oscimeta:Identifier></oscimeta:Reader>\
             <xta:ServiceType>{}</xta:ServiceType><xta:IsServiceAvailableValue><xta:ServiceIsAvailable>{available}</xta:ServiceIsAvailable></xta:IsServiceAvailableValue>{parameter}</xta:LookupServiceResult>",
            esc(&reader),
            esc(&service_type)
        ));
    }
    if results.is_empty() {
        return Err(invalid("LookupServiceRequest lists no LookupService"));
    }
    Ok(format!(
        "<xta:LookupServiceResponse xmlns:xta=\"{XTA_NS}\" xmlns:oscimeta=\"{META_NS}\"><xta:LookupServiceResultList>{results}</xta:LookupServiceResultList></xta:LookupServiceResponse>"
    ))
}

/// XTA's traffic light for a Poststelle state: 0 still in progress, 1 delivered, 3 ended
/// without delivery.
pub(super) fn traffic_light(status: Status) -> u8 {
    match status {
        Status::Delivered => 1,
        Status::Rejected | Status::Failed | Status::Cancelled | Status::Refused => 3,
        _ => 0,
    }
}

/// getTransportReport: the message's state, its metadata (as the client sent it), every
/// timeline event as an info record, the error if it ended without delivery, and the
/// partner's signed receipt (and delivery notice) as additional reports.
pub(super) async fn report(ctx: &Ctx, client: &Client, body: Node<'_, '_>) -> Result<String, Problem> {
    let id = body_message_id(body)?;
    let m = crate::actions::own_message(ctx, client, &id).await?;
    let events = ctx.store.events(&id).await.map_err(store_problem)?;
    let meta = match ctx.store.blob(&id, Blob::XtaMetadata).await.map_err(store_problem)? {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => metadata(&m, None),
    };
    let record = |kind: &str, at: i64, code: &str, reason: &str| {
        format!(
            "<xta:{kind}><xta:Timestamp>{}</xta:Timestamp><xta:Code listURI=\"urn:poststelle:status\" listVersionID=\"1\"><code>{}</code></xta:Code><xta:Reason>{}</xta:Reason></xta:{kind}>",
            rfc3339(at),
            esc(code),
            esc(reason)
        )
    };
    let infos: String = events
        .iter()
        .map(|e| record("Info", e.at, e.status.as_str(), e.detail.as_deref().unwrap_or("")))
        .collect();
    let light = traffic_light(m.status);
    let errors = match (&m.error_code, light) {
        (Some(code), 3) => format!(
            "<xta:ErrorList>{}</xta:ErrorList>",
            record("Error", m.updated_at, code, m.error_detail.as_deref().unwrap_or(""))
        ),
        _ => String::new(),
    };
    let mut reports = String::new();
    for (blob, key) in [(Blob::Receipt, "receipt"), (Blob::Notice, "notice")] {
        if let Some(b) = ctx.store.blob(&id, blob).await.map_err(store_problem)? {
            reports.push_str(&format!(
                "<xta:Report><xta:Key listURI=\"urn:poststelle:xta:report\" listVersionID=\"1\"><code>{key}</code></xta:Key><xta:Data>{}</xta:Data></xta:Report>",
                B64.encode(b)
            ));
        }
    }
    if !reports.is_empty() {
        reports = format!("<xta:AdditionalReports>{reports}</xta:AdditionalReports>");
    }
    Ok(format!(
        "<xta:TransportReport xmlns:xta=\"{XTA_NS}\">{meta}<xta:ReportTime>{}</xta:ReportTime>\
         <xta:XTAServerIdentity>urn:poststelle:node:{}</xta:XTAServerIdentity>\
         <xta:MessageStatus><xta:Status>{light}</xta:Status>{errors}<xta:InfoList>{infos}</xta:InfoList></xta:MessageStatus>{reports}</xta:TransportReport>",
        rfc3339(crate::store::now_millis()),
        esc(&ctx.config().node_name)
    ))
}
