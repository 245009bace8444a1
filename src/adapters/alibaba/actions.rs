//! Changing things on Alibaba Cloud: renewals, orders paid, auto-renewal
//! switched, each read back after a lost answer.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Alibaba, Instance, Instances, Orders, PAGE_SIZE, Service, page};
use crate::adapters::cloud::{
    self, Amount, MAX_PAGES, Site, action_error, answered, done, malformed, no_such_call, parse,
    site, utc_text, utc_time,
};
use crate::domain::model::Account;
use crate::domain::money::Money;
use crate::domain::request::Action;
use crate::ports::{
    ActionError, Actions, CallAnswer, CloudCall, LostCall, NextCall, ProviderError, ReadBack,
};

/// ECS and RDS renew through their own APIs; BSS `RenewInstance` does the rest.
const ECS: &str = "ecs";

fn renew_months_ok(product: &str, months: u32) -> bool {
    match product {
        ECS => matches!(months, 1..=9 | 12 | 24 | 36 | 48 | 60),
        _ => matches!(months, 1..=9 | 12 | 24 | 36),
    }
}

/// A renewal's order, as what the call made that is its request's alone.
fn order_effect(order: &str) -> Vec<String> {
    Some(order.to_owned())
        .filter(|o| !o.is_empty())
        .into_iter()
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderDetail {
    #[serde(default)]
    payment_status: String,
    /// Comma-separated.
    #[serde(rename = "InstanceIDs", default)]
    instance_ids: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderDetails {
    order_list: Option<OrderDetailList>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrderDetailList {
    #[serde(default)]
    order: Vec<OrderDetail>,
}

impl Alibaba {
    /// Whether a renewal whose answer was lost shows: a renewal order of the
    /// instance created since the call and claimed by no other request
    /// (paid: done; unpaid: still going); none: not made. The instance's
    /// end time does not tell: an earlier renewal, answered before its
    /// order was paid, may move it at any time.
    async fn renewal_shown(
        &self,
        ctx: &Site<'_>,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        let p = &lost.call.params;
        let id = cloud::text(&p["InstanceId"]).unwrap_or_default();
        let i = self.instance(ctx, &id).await?;
        let mut unpaid = None;
        for (order, status) in self
            .renewal_orders(ctx, &i, lost.since - Duration::minutes(1))
            .await?
        {
            if lost.claimed.contains(&order) {
                continue;
            }
            match status.as_str() {
                "Paid" => {
                    return Ok(ReadBack::Happened(CallAnswer {
                        effects: vec![order.clone()],
                        ..done(json!({"InstanceId": id, "OrderId": order, "read_back": true}))
                    }));
                }
                // Its payment failed and it was cancelled: no effect.
                "Cancelled" => {}
                _ => unpaid = Some(order),
            }
        }
        Ok(match unpaid {
            Some(order) => {
                ReadBack::Unknown(format!("renewal order {order} of {id} is not paid yet"))
            }
            None => ReadBack::NotHappened,
        })
    }

    /// The renewal orders of instance `i` created since `since`, with their
    /// payment status, as QueryOrders and GetOrderDetail list them.
    async fn renewal_orders(
        &self,
        ctx: &Site<'_>,
        i: &Instance,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, ProviderError> {
        let now = self.http.clock.now();
        let mut out = Vec::new();
        for n in 1..=MAX_PAGES {
            let v = self
                .call(
                    ctx.access,
                    ctx.intl,
                    "QueryOrders",
                    &[
                        page(n),
                        ("PageSize", PAGE_SIZE.to_string()),
                        ("OrderType", "Renew".into()),
                        ("ProductCode", i.product_code.clone()),
                        ("CreateTimeStart", utc_text(since)),
                        ("CreateTimeEnd", utc_text(now + Duration::minutes(1))),
                    ],
                )
                .await?;
            let rows = parse::<Orders>(v, "QueryOrders")?
                .order_list
                .map(|l| l.order)
                .unwrap_or_default();
            let got = rows.len();
            for o in rows {
                let order = o.order_id.text().to_owned();
                let v = self
                    .call(
                        ctx.access,
                        ctx.intl,
                        "GetOrderDetail",
                        &[("OrderId", order.clone())],
                    )
                    .await?;
                let details = parse::<OrderDetails>(v, "GetOrderDetail")?
                    .order_list
                    .map(|l| l.order)
                    .unwrap_or_default();
                out.extend(
                    details
                        .into_iter()
                        .filter(|d| d.instance_ids.split(',').any(|x| x.trim() == i.instance_id))
                        .map(|d| (order.clone(), d.payment_status)),
                );
            }
            if got < PAGE_SIZE as usize {
                break;
            }
        }
        Ok(out)
    }

    /// One subscription instance, as BSS lists it.
    async fn instance(&self, ctx: &Site<'_>, id: &str) -> Result<Instance, ProviderError> {
        let v = self
            .call(
                ctx.access,
                ctx.intl,
                "QueryAvailableInstances",
                &[
                    ("InstanceIDs", id.to_owned()),
                    ("SubscriptionType", "Subscription".into()),
                ],
            )
            .await?;
        let p: Instances = parse(v, "QueryAvailableInstances")?;
        p.instance_list
            .into_iter()
            .find(|i| i.instance_id == id)
            .ok_or_else(|| ProviderError::Rejected {
                code: "InstanceNotFound".into(),
                message: format!("no subscription instance {id} on this account"),
            })
    }
}

#[async_trait]
impl Actions for Alibaba {
    /// ECS renewals are priced by ECS's DescribeRenewalPrice, other
    /// products' by BSS's GetSubscriptionPrice (a renewal order's price);
    /// both answer in the major unit.
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
            let i = self.instance(&ctx, id.as_str()).await?;
            let region = i.region.clone().unwrap_or_default();
            let (name, price) = if i.product_code == ECS {
                if !renew_months_ok(ECS, *months) {
                    return Ok(None);
                }
                let v = self
                    .send(
                        ctx.access,
                        ctx.intl,
                        Service::Ecs(&region),
                        "DescribeRenewalPrice",
                        &[
                            ("RegionId", region.clone()),
                            ("ResourceId", id.to_string()),
                            ("ResourceType", "instance".into()),
                            ("Period", months.to_string()),
                            ("PriceUnit", "Month".into()),
                        ],
                        true,
                    )
                    .await?;
                (
                    "DescribeRenewalPrice",
                    v["PriceInfo"]["Price"]["TradePrice"].clone(),
                )
            } else {
                let mut params = vec![
                    ("ProductCode", i.product_code.clone()),
                    ("SubscriptionType", "Subscription".into()),
                    ("OrderType", "Renewal".into()),
                    ("ServicePeriodQuantity", months.to_string()),
                    ("ServicePeriodUnit", "Month".into()),
                    ("InstanceId", id.to_string()),
                    ("Quantity", "1".into()),
                ];
                if let Some(t) = i.product_type.clone().filter(|t| !t.is_empty()) {
                    params.push(("ProductType", t));
                }
                if !region.is_empty() {
                    params.push(("Region", region.clone()));
                }
                let v = self
                    .call(ctx.access, ctx.intl, "GetSubscriptionPrice", &params)
                    .await?;
                ("GetSubscriptionPrice", v["TradePrice"].clone())
            };
            let bad = malformed(name);
            if price.is_null() {
                return Err(bad("no TradePrice in the answer".into()));
            }
            let price: Amount =
                serde_json::from_value(price).map_err(|e| bad(format!("TradePrice: {e}")))?;
            total = total
                .checked_add(&price.major(ctx.currency).map_err(&bad)?)
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(Some(total))
    }

    async fn next(
        &self,
        account: &Account,
        action: &Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        let call = |name: &str, params: Value| {
            // Every change here carries a client token, or sets a state.
            NextCall::Call(CloudCall {
                name: name.into(),
                params,
                repeatable: true,
            })
        };
        Ok(match action {
            Action::Renew { resources, months } => {
                let ctx = site(&self.accounts, account)?;
                if done.is_empty() {
                    for id in resources {
                        let i = self.instance(&ctx, id.as_str()).await?;
                        if i.product_code == "rds" {
                            return Ok(NextCall::ByHand(format!(
                                "Alibaba Cloud renews RDS instances such as {id} through the RDS console, not BSS; renew there"
                            )));
                        }
                    }
                }
                match resources.get(done.len()) {
                    Some(id) => {
                        let i = self.instance(&ctx, id.as_str()).await?;
                        call(
                            "RenewInstance",
                            json!({
                                "ProductCode": i.product_code,
                                "ProductType": i.product_type,
                                "Region": i.region,
                                "InstanceId": id,
                                "Months": months,
                                "Index": done.len(),
                            }),
                        )
                    }
                    None => {
                        let mut lines = Vec::new();
                        for id in resources {
                            let i = self.instance(&ctx, id.as_str()).await?;
                            let end = i.end_time.as_deref().map(utc_time).transpose();
                            let end = end.map_err(malformed("QueryAvailableInstances"))?;
                            if let Some(end) = end {
                                lines.push(format!(
                                    "{id} now expires {}",
                                    end.format("%Y-%m-%d %H:%M UTC")
                                ));
                            }
                        }
                        NextCall::Done {
                            summary: lines.join(", "),
                            details: json!(done.iter().map(|(_, a)| &a.result).collect::<Vec<_>>()),
                        }
                    }
                }
            }
            Action::Autorenew { resource, on } => match done.first() {
                None => {
                    let ctx = site(&self.accounts, account)?;
                    let i = self.instance(&ctx, resource.as_str()).await?;
                    call(
                        "SetRenewal",
                        json!({
                            "ProductCode": i.product_code,
                            "ProductType": i.product_type,
                            "InstanceIDs": resource,
                            "RenewalStatus": if *on { "AutoRenewal" } else { "ManualRenewal" },
                        }),
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
            Action::Pay { orders, .. } => NextCall::ByHand(format!(
                "Alibaba Cloud has no API that pays an order: pay {} in the console (Expenses → Orders → Unpaid) or the app; purser sees it leave the unpaid list",
                orders
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Action::Topup { .. } | Action::Allocate { .. } => NextCall::ByHand(
                "Alibaba Cloud takes money in the console or app only (Alipay, UnionPay, bank transfer)".into(),
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
        let text = |v: &Value| cloud::text(v).unwrap_or_default();
        match call.name.as_str() {
            "RenewInstance" => {
                let product = text(&p["ProductCode"]);
                let months = p["Months"]
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(0);
                if !renew_months_ok(&product, months) {
                    return Err(ActionError::Refused {
                        code: "period".into(),
                        message: format!(
                            "Alibaba Cloud renews {product} for 1 to 9, 12, 24 or 36 months{}, not {months}",
                            if product == ECS {
                                " (ECS also 48 or 60)"
                            } else {
                                ""
                            }
                        ),
                    });
                }
                // Same token, same renewal: a repeat answers the first order.
                let token = format!("{key}-{}", p["Index"].as_u64().unwrap_or(0));
                let id = text(&p["InstanceId"]);
                if product == ECS {
                    let region = text(&p["Region"]);
                    let v = self
                        .send(
                            ctx.access,
                            ctx.intl,
                            Service::Ecs(&region),
                            "RenewInstance",
                            &[
                                ("InstanceId", id.clone()),
                                ("Period", months.to_string()),
                                ("PeriodUnit", "Month".into()),
                                ("ClientToken", token),
                            ],
                            true,
                        )
                        .await
                        .map_err(action_error)?;
                    let order = text(&v["OrderId"]);
                    return Ok(CallAnswer {
                        effects: order_effect(&order),
                        ..answered(&v, json!({"InstanceId": id, "OrderId": order}))
                    });
                }
                let mut params = vec![
                    ("ProductCode", product),
                    ("InstanceId", id.clone()),
                    ("RenewPeriod", months.to_string()),
                    ("ClientToken", token),
                ];
                if let Some(t) = p["ProductType"].as_str().filter(|t| !t.is_empty()) {
                    params.push(("ProductType", t.to_owned()));
                }
                let data = self
                    .send(
                        ctx.access,
                        ctx.intl,
                        Service::Bss,
                        "RenewInstance",
                        &params,
                        true,
                    )
                    .await
                    .map_err(action_error)?;
                // A string by type, a bare number in the doc's example.
                let order = text(&data["OrderId"]);
                Ok(CallAnswer {
                    effects: order_effect(&order),
                    ..done(json!({"InstanceId": id, "OrderId": order}))
                })
            }
            "SetRenewal" => {
                let mut params = vec![
                    ("ProductCode", text(&p["ProductCode"])),
                    ("InstanceIDs", text(&p["InstanceIDs"])),
                    ("RenewalStatus", text(&p["RenewalStatus"])),
                ];
                if p["RenewalStatus"] == "AutoRenewal" {
                    params.push(("RenewalPeriod", "1".into()));
                    params.push(("RenewalPeriodUnit", "M".into()));
                }
                if let Some(t) = p["ProductType"].as_str().filter(|t| !t.is_empty()) {
                    params.push(("ProductType", t.to_owned()));
                }
                self.send(
                    ctx.access,
                    ctx.intl,
                    Service::Bss,
                    "SetRenewal",
                    &params,
                    true,
                )
                .await
                .map_err(action_error)?;
                Ok(done(json!({"RenewalStatus": p["RenewalStatus"]})))
            }
            other => Err(no_such_call(other)),
        }
    }

    async fn read_back(
        &self,
        account: &Account,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        let call = lost.call;
        Ok(match call.name.as_str() {
            // The client token makes a repeat answer the first renewal, but
            // Alibaba does not say for how long it keeps tokens: what the
            // instance and its renewal orders show decides first, and the
            // token only guards a repeat of what they do not show.
            "RenewInstance" => {
                let ctx = site(&self.accounts, account)?;
                self.renewal_shown(&ctx, lost).await?
            }
            "SetRenewal" => {
                let ctx = site(&self.accounts, account)?;
                let id = call.params["InstanceIDs"].as_str().unwrap_or_default();
                let i = self.instance(&ctx, id).await?;
                if i.renew_status.as_deref() == call.params["RenewalStatus"].as_str() {
                    ReadBack::Happened(done(json!({"RenewalStatus": i.renew_status})))
                } else {
                    ReadBack::NotHappened
                }
            }
            other => ReadBack::Unknown(format!("no such call {other}")),
        })
    }
}
