//! Changing things on Huawei Cloud: renewals (an order, then its payment),
//! orders paid, auto-renewal switched, each read back after a lost answer.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Api, Huawei, PAGE, RawResource, Resources, coupon_kind, coupon_pay_type, discount_kind,
    measured,
};
use crate::adapters::cloud::{
    Amount, MAX_PAGES, Site, action_error, done, malformed, no_such_call, parse, site, texts,
    utc_text, utc_time,
};
use crate::domain::model::Account;
use crate::domain::money::Money;
use crate::domain::policy::Offer;
use crate::domain::request::Action;
use crate::ports::{
    ActionError, Actions, CallAnswer, CloudCall, LostCall, NextCall, ProviderError, ReadBack,
};

/// Main resources one renewal takes at most.
const RENEW_BATCH: usize = 10;
/// `PayOrders`: "the order state changed and it can no longer be paid".
const NOT_PAYABLE: &str = "CBC.99003106";

const RENEW: Api<'static> = Api {
    name: "RenewalResources",
    method: "POST",
    path: "/v2/orders/subscriptions/resources/renew",
    permission: "billing:subscription:renew",
};
const PAY: Api<'static> = Api {
    name: "PayOrders",
    method: "POST",
    path: "/v3/orders/customer-orders/pay",
    permission: "billing:order:pay",
};
const RENEW_RATE: Api<'static> = Api {
    name: "ListRenewRateOnPeriod",
    method: "POST",
    path: "/v2/bills/ratings/period-resources/renew-rate",
    permission: "billing:subscription:view",
};

/// Huawei renews by month (1–11) or by year (1–3): `(period_type, period_num)`.
pub(super) fn period(months: u32) -> Option<(u8, u32)> {
    match months {
        1..=11 => Some((2, months)),
        12 | 24 | 36 => Some((3, months / 12)),
        _ => None,
    }
}

#[derive(Deserialize)]
struct OrderState {
    order_id: String,
    status: u8,
    #[serde(default)]
    order_type: Option<u8>,
    #[serde(default)]
    service_type_code: Option<String>,
    #[serde(default)]
    create_time: Option<String>,
}

#[derive(Deserialize)]
struct OrderStates {
    #[serde(default)]
    order_infos: Vec<OrderState>,
}

/// Order status 4: cancelled.
const CANCELLED: u8 = 4;

/// Ids as a sentence lists them.
fn list<'a>(ids: impl IntoIterator<Item = &'a String>) -> String {
    ids.into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Order status: 3 processing, 5 completed (paid), 6 awaiting payment.
fn paid(status: u8) -> bool {
    matches!(status, 3 | 5)
}

impl Huawei {
    /// The main resources `order` renews, as the subscription listing gives
    /// them for it.
    async fn resources_of_order(
        &self,
        ctx: &Site<'_>,
        order: &str,
    ) -> Result<BTreeSet<String>, ProviderError> {
        Ok(self
            .subscriptions(ctx, json!({"order_id": order}))
            .await?
            .into_iter()
            .map(|r| r.resource_id)
            .collect())
    }

    /// What a lost `RenewalResources` left: the renewal orders created since
    /// it was recorded whose resources are among those it asked for, each
    /// resource in exactly one; anything that touches them otherwise is for
    /// a person to sort out.
    async fn renewal_orders_of(
        &self,
        ctx: &Site<'_>,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError> {
        let p = &lost.call.params;
        let wanted: BTreeSet<String> = texts(&p["resource_ids"]).into_iter().collect();
        let services = texts(&p["service_types"]);
        let since = lost.since - Duration::minutes(1);
        let now = self.http.clock.now();
        let mut found = Vec::new();
        for page in 0..MAX_PAGES {
            let rows = self
                .orders(
                    ctx,
                    &[
                        ("order_type", "2".into()),
                        ("create_time_begin", utc_text(since)),
                        ("create_time_end", utc_text(now + Duration::minutes(1))),
                        ("limit", PAGE.to_string()),
                        ("offset", (u64::from(page) * PAGE).to_string()),
                    ],
                )
                .await?;
            let got = rows.len();
            found.extend(rows);
            if got < PAGE as usize {
                break;
            }
        }
        let mut ours: Vec<(String, BTreeSet<String>)> = Vec::new();
        let mut untold = Vec::new();
        for o in found {
            let created = o.create_time.as_deref().and_then(|t| utc_time(t).ok());
            let candidate = o.order_type.is_none_or(|t| t == 2)
                && o.status != CANCELLED
                && created.is_none_or(|t| t >= since)
                && (services.is_empty()
                    || o.service_type_code
                        .as_ref()
                        .is_none_or(|s| services.contains(s)))
                && !lost.claimed.contains(&o.order_id);
            if !candidate {
                continue;
            }
            let renews = self.resources_of_order(ctx, &o.order_id).await?;
            if renews.is_empty() {
                untold.push(o.order_id);
            } else if renews.is_subset(&wanted) {
                ours.push((o.order_id, renews));
            } else if !renews.is_disjoint(&wanted) {
                return Ok(ReadBack::Unclear(format!(
                    "renewal order {} renews {}, more than the {} asked for",
                    o.order_id,
                    list(&renews),
                    list(&wanted)
                )));
            }
        }
        for r in &wanted {
            let by: Vec<&str> = ours
                .iter()
                .filter(|(_, renews)| renews.contains(r))
                .map(|(id, _)| id.as_str())
                .collect();
            if by.len() > 1 {
                return Ok(ReadBack::Unclear(format!(
                    "renewal orders {} each renew {r}",
                    by.join(" and ")
                )));
            }
        }
        let covered: BTreeSet<&String> = ours.iter().flat_map(|(_, renews)| renews).collect();
        Ok(if covered.len() == wanted.len() {
            let ids: Vec<String> = ours.into_iter().map(|(id, _)| id).collect();
            ReadBack::Happened(CallAnswer {
                effects: ids.clone(),
                ..done(json!({"order_ids": ids, "read_back": true}))
            })
        } else if !covered.is_empty() {
            ReadBack::Unknown(format!(
                "renewal orders for {} are listed, not yet for the rest of {}",
                list(covered),
                list(&wanted)
            ))
        } else if !untold.is_empty() {
            ReadBack::Unclear(format!(
                "renewal order {} was created since, and the cloud does not list what it renews",
                untold.join(", ")
            ))
        } else {
            ReadBack::NotHappened
        })
    }

    async fn api(
        &self,
        ctx: &Site<'_>,
        api: &Api<'_>,
        query: &[(&str, String)],
        body: Option<Value>,
        repeatable: bool,
    ) -> Result<Value, ProviderError> {
        self.send(ctx.access, ctx.intl, api, query, body, repeatable)
            .await
    }

    /// Main resources by id, as the subscription listing has them.
    async fn resources_by_id(
        &self,
        ctx: &Site<'_>,
        ids: &[String],
    ) -> Result<Vec<RawResource>, ProviderError> {
        self.subscriptions(ctx, json!({"resource_ids": ids})).await
    }

    /// Main subscription resources matching `filter` (by ids, by order).
    async fn subscriptions(
        &self,
        ctx: &Site<'_>,
        mut filter: Value,
    ) -> Result<Vec<RawResource>, ProviderError> {
        filter["only_main_resource"] = json!(1);
        filter["limit"] = json!(PAGE);
        let v = self
            .call(
                ctx.access,
                ctx.intl,
                "POST",
                "/v2/orders/suscriptions/resources/query",
                &[],
                Some(filter),
            )
            .await?;
        Ok(parse::<Resources>(v, "ListPayPerUseCustomerResources")?.data)
    }

    /// Orders by id, or renewal orders created since a time.
    async fn orders(
        &self,
        ctx: &Site<'_>,
        query: &[(&str, String)],
    ) -> Result<Vec<OrderState>, ProviderError> {
        let v = self
            .call(
                ctx.access,
                ctx.intl,
                "GET",
                "/v2/orders/customer-orders",
                query,
                None,
            )
            .await?;
        Ok(parse::<OrderStates>(v, "ListCustomerOrders")?.order_infos)
    }

    async fn order(&self, ctx: &Site<'_>, id: &str) -> Result<Option<OrderState>, ProviderError> {
        let found = self
            .orders(ctx, &[("order_id", id.to_owned()), ("limit", "1".into())])
            .await?;
        Ok(found.into_iter().find(|o| o.order_id == id))
    }

    /// The `{id, type}` of each coupon or discount asked for, as the cloud
    /// lists them usable on `order`; one it does not list is refused.
    async fn usable(
        &self,
        ctx: &Site<'_>,
        order: &str,
        wanted: &[String],
        discount: bool,
    ) -> Result<Vec<Value>, ActionError> {
        if wanted.is_empty() {
            return Ok(vec![]);
        }
        let (path, list, id, kind, what) = if discount {
            (
                "/v2/orders/customer-orders/order-discounts",
                "discounts",
                "discount_id",
                "discount_type",
                "discount",
            )
        } else {
            (
                "/v2/orders/customer-orders/order-coupons",
                "user_coupons",
                "coupon_id",
                "coupon_type",
                "coupon",
            )
        };
        let api = Api {
            name: if discount {
                "ListOrderDiscounts"
            } else {
                "ListOrderCouponsByOrderId"
            },
            method: "GET",
            path,
            permission: "billing:order:view",
        };
        let v = self
            .api(ctx, &api, &[("order_id", order.to_owned())], None, true)
            .await
            .map_err(ActionError::NotSent)?;
        let offered = v[list].as_array().cloned().unwrap_or_default();
        wanted
            .iter()
            .map(|w| {
                let o = offered
                    .iter()
                    .find(|o| o[id].as_str() == Some(w.as_str()))
                    .ok_or_else(|| ActionError::Refused {
                        code: format!("{what} not usable"),
                        message: format!(
                            "the cloud does not offer {what} {w} for order {order} (used, expired, or not for this order)"
                        ),
                    })?;
                // Coupons are listed by kind (1-4) and paid with by another
                // code (300-303); discounts keep theirs.
                let code = if discount {
                    o[kind].as_i64()
                } else {
                    o[kind].as_i64().and_then(coupon_pay_type)
                };
                let code = code.ok_or_else(|| ActionError::Refused {
                    code: format!("{what} not usable"),
                    message: format!(
                        "{what} {w} is of a kind ({}) a payment cannot name",
                        o[kind]
                    ),
                })?;
                Ok(json!({"id": w, "type": code}))
            })
            .collect()
    }
}

#[async_trait]
impl Actions for Huawei {
    /// ListOrderCouponsByOrderId and ListOrderDiscounts: what the order can
    /// be paid with. A coupon not yet activated, or locked by another
    /// order, is not offered.
    async fn offers(
        &self,
        account: &Account,
        order: &crate::domain::model::ExternalId,
    ) -> Result<Option<Vec<Offer>>, ProviderError> {
        let ctx = site(&self.accounts, account)?;
        let query = [("order_id", order.to_string())];
        let coupons = self
            .api(
                &ctx,
                &Api {
                    name: "ListOrderCouponsByOrderId",
                    method: "GET",
                    path: "/v2/orders/customer-orders/order-coupons",
                    permission: "billing:order:view",
                },
                &query,
                None,
                true,
            )
            .await?;
        let bad = malformed("ListOrderCouponsByOrderId");
        let mut out = Vec::new();
        for c in coupons["user_coupons"].as_array().into_iter().flatten() {
            let Some(id) = c["coupon_id"].as_str() else {
                return Err(bad("a coupon without coupon_id".into()));
            };
            let locked = c["used_by_order_id"]
                .as_str()
                .is_some_and(|o| !o.is_empty() && o != order.as_str());
            if c["status"].as_i64() != Some(2) || locked {
                continue;
            }
            let kind = c["coupon_type"].as_i64().unwrap_or_default();
            let mut label = coupon_kind(kind).to_owned();
            if !c["face_value"].is_null() {
                let value: Amount = serde_json::from_value(c["face_value"].clone())
                    .map_err(|e| bad(format!("face_value: {e}")))?;
                let measure = c["measure_id"].as_u64().and_then(|m| u8::try_from(m).ok());
                if kind == 2 {
                    label.push_str(&format!(" {}", value.decimal().map_err(&bad)?));
                } else {
                    label.push_str(&format!(
                        " {}",
                        measured(&value, measure, ctx.currency).map_err(&bad)?
                    ));
                }
            }
            let expires_at = match c["expire_time"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => Some(utc_time(t).map_err(&bad)?),
                None => None,
            };
            out.push(Offer {
                id: id.to_owned(),
                discount: false,
                expires_at,
                required: false,
                label,
            });
        }
        let discounts = self
            .api(
                &ctx,
                &Api {
                    name: "ListOrderDiscounts",
                    method: "GET",
                    path: "/v2/orders/customer-orders/order-discounts",
                    permission: "billing:order:view",
                },
                &query,
                None,
                true,
            )
            .await?;
        let bad = malformed("ListOrderDiscounts");
        for d in discounts["discounts"].as_array().into_iter().flatten() {
            let Some(id) = d["discount_id"].as_str() else {
                return Err(bad("a discount without discount_id".into()));
            };
            let kind = d["discount_type"].as_i64().unwrap_or(-1);
            let mut label = discount_kind(kind).to_owned();
            if let Some(v) = d["discount_value"].as_str().filter(|v| !v.is_empty()) {
                label.push_str(&format!(" {v}"));
            }
            out.push(Offer {
                id: id.to_owned(),
                discount: true,
                expires_at: None,
                required: kind == 609,
                label,
            });
        }
        Ok(Some(out))
    }

    /// Renewals are priced by ListRenewRateOnPeriod, in yuan, per main
    /// resource with what is attached to it.
    async fn quote(
        &self,
        account: &Account,
        action: &Action,
    ) -> Result<Option<Money>, ProviderError> {
        let Action::Renew { resources, months } = action else {
            return Ok(None);
        };
        let Some((period_type, period_num)) = period(*months) else {
            return Ok(None);
        };
        let ctx = site(&self.accounts, account)?;
        let bad = malformed(RENEW_RATE.name);
        let mut total = Money::zero(ctx.currency);
        for batch in resources.chunks(RENEW_BATCH) {
            let v = self
                .api(
                    &ctx,
                    &RENEW_RATE,
                    &[],
                    Some(json!({
                        "resource_ids": batch,
                        "period_type": period_type,
                        "period_num": period_num,
                        "include_relative_resources": true,
                    })),
                    true,
                )
                .await?;
            // A resource the inquiry could not price is named with the
            // cloud's reason; the sum would be short without it.
            if let Some(f) = v["fail_resource_infos"].as_array().and_then(|f| f.first()) {
                return Err(ProviderError::Rejected {
                    code: f["error_code"].as_str().unwrap_or("CBC").to_owned(),
                    message: format!(
                        "{}: {}",
                        f["resource_id"].as_str().unwrap_or("a resource"),
                        f["error_msg"].as_str().unwrap_or("not priced")
                    ),
                });
            }
            let rates = v["renew_inquiry_results"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if rates.len() < batch.len() {
                return Err(bad(format!(
                    "{} renew_inquiry_results for {} resources",
                    rates.len(),
                    batch.len()
                )));
            }
            for rate in rates {
                let rate: Amount = serde_json::from_value(rate["amount"].clone())
                    .map_err(|e| bad(format!("renew_inquiry_results amount: {e}")))?;
                let price = rate.major(ctx.currency).map_err(&bad)?;
                total = total.checked_add(&price).map_err(|e| bad(e.to_string()))?;
            }
        }
        Ok(Some(total))
    }

    async fn next(
        &self,
        account: &Account,
        action: &Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError> {
        let call = |name: &str, params: Value, repeatable: bool| {
            NextCall::Call(CloudCall {
                name: name.into(),
                params,
                repeatable,
            })
        };
        let paid = done.iter().filter(|(c, _)| c.name == PAY.name).count();
        Ok(match action {
            // The renewal order is created unpaid, then paid: a renewal has
            // no token, a payment of a paid order is refused.
            Action::Renew { resources, months } => {
                let renewals: Vec<_> = done.iter().filter(|(c, _)| c.name == RENEW.name).collect();
                let batches: Vec<_> = resources.chunks(RENEW_BATCH).collect();
                if let Some(batch) = batches.get(renewals.len()) {
                    let ctx = site(&self.accounts, account)?;
                    let ids: Vec<String> = batch.iter().map(|i| i.to_string()).collect();
                    let found = self.resources_by_id(&ctx, &ids).await?;
                    let services: BTreeSet<_> = found
                        .iter()
                        .filter_map(|r| r.service_type_code.clone())
                        .collect();
                    return Ok(call(
                        RENEW.name,
                        json!({"resource_ids": ids, "months": months, "service_types": services}),
                        false,
                    ));
                }
                let orders: Vec<String> = renewals
                    .iter()
                    .flat_map(|(_, a)| texts(&a.result["order_ids"]))
                    .collect();
                if let Some(order) = orders.get(paid) {
                    return Ok(call(PAY.name, json!({"order_id": order}), true));
                }
                let ctx = site(&self.accounts, account)?;
                let ids: Vec<String> = resources.iter().map(|i| i.to_string()).collect();
                let mut lines = Vec::new();
                for r in self.resources_by_id(&ctx, &ids).await? {
                    let at = r
                        .expire_time
                        .as_deref()
                        .map(utc_time)
                        .transpose()
                        .map_err(malformed("ListPayPerUseCustomerResources"))?;
                    if let Some(at) = at {
                        lines.push(format!(
                            "{} now expires {}",
                            r.resource_id,
                            at.format("%Y-%m-%d %H:%M UTC")
                        ));
                    }
                }
                NextCall::Done {
                    summary: lines.join(", "),
                    details: json!({"order_ids": orders}),
                }
            }
            Action::Pay {
                orders,
                coupons,
                discount,
                ..
            } => match orders.get(paid) {
                Some(order) => call(
                    PAY.name,
                    json!({
                        "order_id": order,
                        "coupons": coupons,
                        "discount": discount,
                        "of": orders.len(),
                    }),
                    true,
                ),
                None => NextCall::Done {
                    summary: format!(
                        "{} paid from the balance",
                        orders
                            .iter()
                            .map(|o| o.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    details: json!({"order_ids": orders}),
                },
            },
            Action::Autorenew { resource, on } => match done.first() {
                None => call(
                    if *on {
                        "AutoRenewalResources"
                    } else {
                        "CancelAutoRenewalResources"
                    },
                    json!({"resource_id": resource, "on": on}),
                    true,
                ),
                Some(_) => NextCall::Done {
                    summary: format!(
                        "auto-renew turned {} for {resource}",
                        if *on { "on" } else { "off" }
                    ),
                    details: json!({"resource_id": resource, "on": on}),
                },
            },
            Action::Topup { .. } | Action::Allocate { .. } => NextCall::ByHand(
                "Huawei Cloud takes money in the console only (online payment or bank transfer in Billing Center)".into(),
            ),
        })
    }

    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        _key: &str,
    ) -> Result<CallAnswer, ActionError> {
        let ctx = site(&self.accounts, account).map_err(ActionError::NotSent)?;
        let p = &call.params;
        match call.name.as_str() {
            "RenewalResources" => {
                let months = p["months"].as_u64().unwrap_or(0);
                let Some((period_type, period_num)) = u32::try_from(months).ok().and_then(period)
                else {
                    return Err(ActionError::Refused {
                        code: "period".into(),
                        message: format!(
                            "Huawei Cloud renews for 1 to 11 months or 1 to 3 whole years, not {months} months"
                        ),
                    });
                };
                let body = json!({
                    "resource_ids": p["resource_ids"],
                    "period_type": period_type,
                    "period_num": period_num,
                    // Only the order: paying it is a separate, refusable step.
                    "is_auto_pay": 0,
                });
                let v = self
                    .api(&ctx, &RENEW, &[], Some(body), false)
                    .await
                    .map_err(action_error)?;
                let orders = texts(&v["order_ids"]);
                if let Some(f) = v["fail_resource_infos"].as_array().and_then(|f| f.first()) {
                    let left = if orders.is_empty() {
                        String::new()
                    } else {
                        format!(" (order {} was created and left unpaid)", orders.join(", "))
                    };
                    return Err(ActionError::Refused {
                        code: f["error_code"].as_str().unwrap_or(RENEW.name).to_owned(),
                        message: format!(
                            "{}: {}{left}",
                            f["resource_id"].as_str().unwrap_or_default(),
                            f["error_msg"].as_str().unwrap_or_default()
                        ),
                    });
                }
                if orders.is_empty() {
                    return Err(ActionError::Unknown(
                        "RenewalResources answered without an order id".into(),
                    ));
                }
                Ok(CallAnswer {
                    effects: orders.clone(),
                    ..done(json!({"order_ids": orders}))
                })
            }
            "PayOrders" => {
                let order = p["order_id"].as_str().unwrap_or_default();
                let coupons: Vec<String> = texts(&p["coupons"]);
                let discount: Vec<String> = p["discount"]
                    .as_str()
                    .map(str::to_owned)
                    .into_iter()
                    .collect();
                if (!coupons.is_empty() || !discount.is_empty()) && p["of"].as_u64() > Some(1) {
                    return Err(ActionError::Refused {
                        code: "coupon".into(),
                        message: "Huawei Cloud applies coupons and discounts per order: pay the orders one at a time to use them".into(),
                    });
                }
                let coupon_infos = self.usable(&ctx, order, &coupons, false).await?;
                let discount_infos = self.usable(&ctx, order, &discount, true).await?;
                let mut body = json!({
                    "order_id": order,
                    "use_coupon": if coupon_infos.is_empty() { "NO" } else { "YES" },
                    "use_discount": if discount_infos.is_empty() { "NO" } else { "YES" },
                });
                if !coupon_infos.is_empty() {
                    body["coupon_infos"] = json!(coupon_infos);
                }
                if !discount_infos.is_empty() {
                    body["discount_infos"] = json!(discount_infos);
                }
                // A lost answer is read back rather than repeated here: the
                // repeat of a payment that went through is refused.
                match self.api(&ctx, &PAY, &[], Some(body), false).await {
                    Ok(_) => Ok(done(json!({"order_id": order}))),
                    Err(ProviderError::Rejected { code, message }) if code == NOT_PAYABLE => {
                        // Paid already (by an earlier try, or in the console)
                        // is done; cancelled or expired is a refusal.
                        match self.order(&ctx, order).await {
                            Ok(Some(o)) if paid(o.status) => Ok(CallAnswer {
                                request_id: None,
                                code,
                                result: json!({"order_id": order, "already_paid": true}),
                                effects: Vec::new(),
                            }),
                            Ok(_) => Err(ActionError::Refused { code, message }),
                            Err(e) => Err(ActionError::Unknown(format!(
                                "{message}; the order could not be read: {e}"
                            ))),
                        }
                    }
                    Err(e) => Err(action_error(e)),
                }
            }
            "AutoRenewalResources" | "CancelAutoRenewalResources" => {
                let id = p["resource_id"].as_str().unwrap_or_default();
                let path = format!("/v2/orders/subscriptions/resources/autorenew/{id}");
                let api = Api {
                    name: if call.name == "AutoRenewalResources" {
                        "AutoRenewalResources"
                    } else {
                        "CancelAutoRenewalResources"
                    },
                    method: if call.name == "AutoRenewalResources" {
                        "POST"
                    } else {
                        "DELETE"
                    },
                    path: &path,
                    permission: "billing:subscription:renew",
                };
                self.api(&ctx, &api, &[], None, true)
                    .await
                    .map_err(action_error)?;
                Ok(done(json!({"resource_id": id, "on": p["on"]})))
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
            // No token: a renewal order of these resources created since the
            // call was recorded is its effect, tied by the resources the
            // cloud lists for the order, never by its time or service alone.
            "RenewalResources" => self.renewal_orders_of(&ctx, lost).await?,
            "PayOrders" => {
                let id = p["order_id"].as_str().unwrap_or_default();
                match self.order(&ctx, id).await? {
                    Some(o) if paid(o.status) => {
                        ReadBack::Happened(done(json!({"order_id": id, "read_back": true})))
                    }
                    // Unpaid, or cancelled: a repeat is paid, or refused.
                    Some(o) if matches!(o.status, 4 | 6) => ReadBack::NotHappened,
                    Some(o) => ReadBack::Unknown(format!("order {id} is in state {}", o.status)),
                    None => ReadBack::Unknown(format!("order {id} is not listed")),
                }
            }
            "AutoRenewalResources" | "CancelAutoRenewalResources" => {
                let id = p["resource_id"].as_str().unwrap_or_default();
                let found = self.resources_by_id(&ctx, &[id.to_owned()]).await?;
                let on = found.first().and_then(|r| r.expire_policy) == Some(3);
                if on == (call.name == "AutoRenewalResources") {
                    ReadBack::Happened(done(json!({"resource_id": id, "on": on})))
                } else {
                    ReadBack::NotHappened
                }
            }
            other => ReadBack::Unknown(format!("no such call {other}")),
        })
    }
}
