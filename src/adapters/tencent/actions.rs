//! Changing things on Tencent Cloud: renewals, orders paid, auto-renewal
//! switched, each read back after a lost answer.

use async_trait::async_trait;
use chrono::{DateTime, Duration};
use serde_json::{Value, json};

use super::{
    CvmInstance, CvmInstances, Deals, RenewInstance, RenewInstances, Tencent, beijing_text,
    beijing_time,
};
use crate::adapters::cloud::{
    Amount, Site, action_error, answered, done, malformed as bad, moved_by_months, no_such_call,
    parse, site, texts,
};
use crate::domain::model::{Account, Charge, Resource};
use crate::domain::money::Money;
use crate::domain::request::Action;
use crate::ports::{
    ActionError, Actions, CallAnswer, CloudCall, LostCall, NextCall, ProviderError, ReadBack,
};

const CVM: &str = "p_cvm";

fn flag(on: bool) -> &'static str {
    if on {
        "NOTIFY_AND_AUTO_RENEW"
    } else {
        "NOTIFY_AND_MANUAL_RENEW"
    }
}

impl Tencent {
    /// One instance as renewal management lists it: its product and region.
    async fn renewable_one(
        &self,
        ctx: &Site<'_>,
        id: &str,
    ) -> Result<RenewInstance, ProviderError> {
        let v = self
            .call(
                ctx,
                "billing",
                "DescribeRenewInstances",
                None,
                json!({"MaxResults": 10, "InstanceIdList": [id]}),
            )
            .await?;
        let page: RenewInstances = parse(v, "DescribeRenewInstances")?;
        page.instance_list
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| ProviderError::Rejected {
                code: "ResourceNotFound".into(),
                message: format!("renewal management does not list {id}"),
            })
    }

    async fn cvm_one(
        &self,
        ctx: &Site<'_>,
        region: &str,
        id: &str,
    ) -> Result<CvmInstance, ProviderError> {
        let v = self
            .call(
                ctx,
                "cvm",
                "DescribeInstances",
                Some(region),
                json!({"InstanceIds": [id]}),
            )
            .await?;
        let page: CvmInstances = parse(v, "DescribeInstances")?;
        page.instance_set
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| ProviderError::Rejected {
                code: "InvalidInstanceId.NotFound".into(),
                message: format!("no instance {id} in {region}"),
            })
    }

    /// The configured region whose CVM lists `id`, if any.
    async fn cvm_region(&self, ctx: &Site<'_>, id: &str) -> Result<Option<String>, ProviderError> {
        for region in &ctx.access.regions {
            match self.cvm_one(ctx, region, id).await {
                Ok(_) => return Ok(Some(region.clone())),
                Err(ProviderError::Rejected { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Where `id` stands now, for a receipt.
    async fn expiry_line(&self, ctx: &Site<'_>, id: &str) -> Result<String, ProviderError> {
        let i = self.renewable_one(ctx, id).await?;
        let at = beijing_time(&i.expire_time).map_err(bad("DescribeRenewInstances"))?;
        Ok(format!(
            "{id} now expires {}",
            at.format("%Y-%m-%d %H:%M UTC")
        ))
    }

    /// Whether every order is paid (`Some(true)`), still unpaid
    /// (`Some(false)`), or neither (closed, expired: `None`).
    async fn deals_paid(
        &self,
        ctx: &Site<'_>,
        orders: &[String],
    ) -> Result<Option<bool>, ProviderError> {
        let now = self.http.clock.now();
        let mut paid = true;
        for id in orders {
            let query = |status: Value| {
                json!({
                    "StartTime": beijing_text(now - Duration::days(90)),
                    "EndTime": beijing_text(now),
                    "Limit": 10,
                    "Offset": 0,
                    "OrderId": id,
                    "StatusSet": status,
                })
            };
            let v = self
                .call(
                    ctx,
                    "billing",
                    "DescribeDealsByCond",
                    None,
                    query(json!([1, 12])),
                )
                .await?;
            let open: Deals = parse(v, "DescribeDealsByCond")?;
            if !open.deals.is_empty() {
                paid = false;
                continue;
            }
            let v = self
                .call(
                    ctx,
                    "billing",
                    "DescribeDealsByCond",
                    None,
                    query(json!([2, 3, 4])),
                )
                .await?;
            let done: Deals = parse(v, "DescribeDealsByCond")?;
            if done.deals.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(paid))
    }
}

#[async_trait]
impl Actions for Tencent {
    /// CVM renewals are priced by InquiryPriceRenewInstances, in yuan.
    async fn quote(
        &self,
        account: &Account,
        action: &Action,
    ) -> Result<Option<Money>, ProviderError> {
        let Action::Renew { resources, months } = action else {
            return Ok(None);
        };
        let ctx = site(&self.accounts, account)?;
        let mut total = Money::zero(ctx.currency);
        for id in resources {
            let region = match self.renewable_one(&ctx, id.as_str()).await {
                Ok(info) if info.product_code == CVM => info.region_code.unwrap_or_default(),
                Ok(_) => return Ok(None),
                // An instance CVM lists but renewal management does not:
                // found in the account's regions.
                Err(ProviderError::Rejected { .. }) => {
                    match self.cvm_region(&ctx, id.as_str()).await? {
                        Some(region) => region,
                        None => return Ok(None),
                    }
                }
                Err(e) => return Err(e),
            };
            let v = self
                .call(
                    &ctx,
                    "cvm",
                    "InquiryPriceRenewInstances",
                    Some(&region),
                    json!({"InstanceIds": [id], "InstanceChargePrepaid": {"Period": months}}),
                )
                .await?;
            let price: Amount =
                serde_json::from_value(v["Price"]["InstancePrice"]["DiscountPrice"].clone())
                    .map_err(|e| {
                        bad("InquiryPriceRenewInstances")(format!("DiscountPrice: {e}"))
                    })?;
            let price = price
                .major(ctx.currency)
                .map_err(bad("InquiryPriceRenewInstances"))?;
            total = total
                .checked_add(&price)
                .map_err(|e| bad("InquiryPriceRenewInstances")(e.to_string()))?;
        }
        Ok(Some(total))
    }

    /// The newest delivered renewal deal naming the resource, over the past
    /// year (in the quarters DescribeDealsByCond is asked for), in fen.
    async fn last_renewal(
        &self,
        account: &Account,
        resource: &Resource,
    ) -> Result<Option<Charge>, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let now = self.http.clock.now();
        for quarter in 0..4 {
            let end = now - Duration::days(90 * quarter);
            let v = self
                .call(
                    &ctx,
                    "billing",
                    "DescribeDealsByCond",
                    None,
                    json!({
                        "StartTime": beijing_text(end - Duration::days(90)),
                        "EndTime": beijing_text(end),
                        "Limit": 100,
                        "Offset": 0,
                        "ResourceId": resource.id,
                        "StatusSet": [2, 3, 4],
                    }),
                )
                .await?;
            let page: Deals = parse(v, "DescribeDealsByCond")?;
            let mut newest: Option<Charge> = None;
            for d in page.deals.into_iter().filter(|d| d.action == "renew") {
                let what = format!("DescribeDealsByCond {}", d.order_id);
                let at = beijing_time(&d.create_time).map_err(bad(&what))?;
                let Some(cost) = d.real_total_cost.as_ref().or(d.total_cost.as_ref()) else {
                    continue;
                };
                let amount = cost.minor(ctx.currency).map_err(bad(&what))?;
                if newest.is_none_or(|n| n.at < at) {
                    newest = Some(Charge { amount, at });
                }
            }
            if newest.is_some() {
                return Ok(newest);
            }
        }
        Ok(None)
    }

    async fn next(
        &self,
        account: &Account,
        action: &Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let call = |name: &str, params: Value, repeatable: bool| {
            NextCall::Call(CloudCall {
                name: name.into(),
                params,
                repeatable,
            })
        };
        Ok(match action {
            Action::Renew { resources, months } => match resources.get(done.len()) {
                Some(id) => {
                    let info = self.renewable_one(&ctx, id.as_str()).await?;
                    let region = info.region_code.clone().unwrap_or_default();
                    if info.product_code == CVM {
                        // CVM renewal takes no token: what it must change is
                        // kept, to read back whether it did. An operation
                        // still in progress may move the expiry yet: the
                        // renewal waits until it has.
                        let i = self.cvm_one(&ctx, &region, id.as_str()).await?;
                        if i.latest_operation_state.as_deref() == Some("OPERATING") {
                            return Err(ProviderError::Rejected {
                                code: "OperationDenied.InstanceOperationInProgress".into(),
                                message: format!(
                                    "{id} still has an operation in progress ({}); the renewal waits for it",
                                    i.latest_operation.as_deref().unwrap_or("unknown")
                                ),
                            });
                        }
                        call(
                            "RenewInstances",
                            json!({
                                "Region": region,
                                "InstanceIds": [id],
                                "Period": months,
                                "RenewFlag": i.renew_flag.unwrap_or_else(|| flag(false).into()),
                                "Before": i.expired_time,
                            }),
                            false,
                        )
                    } else {
                        call(
                            "RenewInstance",
                            json!({
                                "ProductCode": info.product_code,
                                "SubProductCode": info.sub_product_code,
                                "RegionCode": region,
                                "InstanceId": id,
                                "Period": months,
                                "PeriodUnit": "m",
                                "Index": done.len(),
                            }),
                            true,
                        )
                    }
                }
                None => {
                    let mut lines = Vec::new();
                    for id in resources {
                        lines.push(self.expiry_line(&ctx, id.as_str()).await?);
                    }
                    NextCall::Done {
                        summary: lines.join(", "),
                        details: json!(done.iter().map(|(_, a)| a).collect::<Vec<_>>()),
                    }
                }
            },
            Action::Pay {
                orders, coupons, ..
            } => match done.first() {
                None => call(
                    "PayDeals",
                    json!({"OrderIds": orders, "AutoVoucher": 0, "VoucherIds": coupons}),
                    // A paid order is refused (FailedOperation.InvalidDeal).
                    true,
                ),
                Some((_, a)) => NextCall::Done {
                    summary: format!(
                        "{} paid from the balance",
                        texts(&a.result["OrderIds"]).join(", ")
                    ),
                    details: a.result.clone(),
                },
            },
            Action::Autorenew { resource, on } => match done.first() {
                None => {
                    let info = self.renewable_one(&ctx, resource.as_str()).await?;
                    call(
                        "SetRenewal",
                        json!({
                            "ProductCode": info.product_code,
                            "RegionCode": info.region_code.unwrap_or_default(),
                            "InstanceId": resource,
                            "RenewFlag": flag(*on),
                        }),
                        true,
                    )
                }
                Some((_, a)) => NextCall::Done {
                    summary: format!(
                        "auto-renew turned {} for {resource}",
                        if *on { "on" } else { "off" }
                    ),
                    details: a.result.clone(),
                },
            },
            Action::Topup { .. } | Action::Allocate { .. } => NextCall::ByHand(
                "Tencent Cloud takes money in the console only (online banking, WeChat Pay, Alipay, bank transfer)".into(),
            ),
        })
    }

    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        key: &str,
    ) -> Result<CallAnswer, ActionError> {
        let ctx = site(&self.accounts, account).map_err(ActionError::NotSent)?;
        let p = &call.params;
        match call.name.as_str() {
            "RenewInstances" => {
                let region = p["Region"].as_str().unwrap_or_default().to_owned();
                let body = json!({
                    "InstanceIds": p["InstanceIds"],
                    "InstanceChargePrepaid": {"Period": p["Period"], "RenewFlag": p["RenewFlag"]},
                    "RenewPortableDataDisk": true,
                });
                let v = self
                    .call_with(&ctx, "cvm", "RenewInstances", Some(&region), body, false)
                    .await
                    .map_err(action_error)?;
                Ok(answered(&v, json!({})))
            }
            "RenewInstance" => {
                let index = p["Index"].as_u64().unwrap_or(0);
                let body = json!({
                    "ClientToken": format!("{key}-{index}"),
                    "ProductCode": p["ProductCode"],
                    "SubProductCode": p["SubProductCode"],
                    "RegionCode": p["RegionCode"],
                    "InstanceId": p["InstanceId"],
                    "Period": p["Period"],
                    "PeriodUnit": p["PeriodUnit"],
                });
                let v = self
                    .call(&ctx, "billing", "RenewInstance", None, body)
                    .await
                    .map_err(action_error)?;
                Ok(answered(&v, json!({"OrderIds": texts(&v["OrderIdList"])})))
            }
            "PayDeals" => {
                let mut body = json!({"OrderIds": p["OrderIds"], "AutoVoucher": 0});
                if p["VoucherIds"].as_array().is_some_and(|a| !a.is_empty()) {
                    body["VoucherIds"] = p["VoucherIds"].clone();
                }
                // A repeat of a payment that went through is refused as
                // InvalidDeal, which would read as a failure: a lost answer
                // is read back by the executor instead of retried here.
                let v = self
                    .call_with(&ctx, "billing", "PayDeals", None, body, false)
                    .await
                    .map_err(action_error)?;
                Ok(answered(
                    &v,
                    json!({"OrderIds": texts(&v["OrderIds"]), "BigDealIds": texts(&v["BigDealIds"])}),
                ))
            }
            "SetRenewal" => {
                let v = self
                    .call(&ctx, "billing", "SetRenewal", None, p.clone())
                    .await
                    .map_err(action_error)?;
                // The list holds the instances it failed on.
                if let Some(f) = v["InstanceList"].as_array().and_then(|l| l.first()) {
                    return Err(ActionError::Refused {
                        code: f["Code"].as_str().unwrap_or("SetRenewal").to_owned(),
                        message: f["Message"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                Ok(answered(&v, json!({"RenewFlag": p["RenewFlag"]})))
            }
            other => Err(no_such_call(other)),
        }
    }

    async fn read_back(
        &self,
        account: &Account,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let call = lost.call;
        let p = &call.params;
        Ok(match call.name.as_str() {
            // No token: the expiry the call was to move tells. No other
            // request renews the instance meanwhile (the executor runs them
            // one after the other), so a move by the months asked is this
            // call's; a move by anything else is for a person to explain.
            "RenewInstances" => {
                let region = p["Region"].as_str().unwrap_or_default();
                let id = texts(&p["InstanceIds"])
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                let i = self.cvm_one(&ctx, region, &id).await?;
                let time = |t: Option<&str>| {
                    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.to_utc())
                };
                let months = p["Period"].as_u64().and_then(|m| u32::try_from(m).ok());
                let renewing = i.latest_operation.as_deref() == Some("RenewInstances");
                match (time(i.expired_time.as_deref()), time(p["Before"].as_str())) {
                    (Some(now), Some(before)) if now > before => {
                        if months.is_some_and(|m| moved_by_months(before, now, m)) {
                            ReadBack::Happened(CallAnswer {
                                request_id: i.latest_operation_request_id.filter(|_| renewing),
                                code: "OK".into(),
                                result: json!({"ExpiredTime": i.expired_time}),
                                effects: Vec::new(),
                            })
                        } else {
                            ReadBack::Unclear(format!(
                                "{id}'s expiry moved from {} to {}, not by the {} month(s) asked (renewed in the console, or by auto-renew?)",
                                before.format("%Y-%m-%d %H:%M UTC"),
                                now.format("%Y-%m-%d %H:%M UTC"),
                                months.unwrap_or_default()
                            ))
                        }
                    }
                    _ if renewing && i.latest_operation_state.as_deref() == Some("OPERATING") => {
                        ReadBack::Unknown(format!("the renewal of {id} is still in progress"))
                    }
                    _ => ReadBack::NotHappened,
                }
            }
            // The client token makes a repeat return the first answer.
            "RenewInstance" => ReadBack::NotHappened,
            "PayDeals" => match self.deals_paid(&ctx, &texts(&p["OrderIds"])).await? {
                Some(true) => ReadBack::Happened(done(json!({"OrderIds": p["OrderIds"]}))),
                Some(false) => ReadBack::NotHappened,
                None => ReadBack::Unknown(
                    "an order is neither unpaid nor paid (closed or expired)".into(),
                ),
            },
            "SetRenewal" => {
                let id = p["InstanceId"].as_str().unwrap_or_default();
                let i = self.renewable_one(&ctx, id).await?;
                if Some(i.renew_flag.as_str()) == p["RenewFlag"].as_str() {
                    ReadBack::Happened(done(json!({"RenewFlag": i.renew_flag})))
                } else {
                    ReadBack::NotHappened
                }
            }
            other => ReadBack::Unknown(format!("no such call {other}")),
        })
    }
}
